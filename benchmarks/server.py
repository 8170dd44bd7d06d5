"""The server under load, and what each kind of client costs per request.

Part one: a scripted policy answers every request with the same short final
answer, so the figures are the server's own: HTTP, SSE, a session per
conversation and the loop. Clients use the real ``openai`` SDK (async)
against 127.0.0.1.

Part two: one conversation of several turns, each a function call and its
answer, as four clients hold it: ``previous_response_id``; a stateless
Responses client sending the whole conversation (the server continues the
session it holds); Chat Completions (the same); and a stateless client whose
conversation the server no longer holds (more conversations than
``max_conversations``), so every request is rebuilt from its items. The
model is a policy behind a prefix cache that remembers every prompt it saw
(as vLLM's prefix caching or llama.cpp's slots do): its prefill count per
request is what a caching backend would compute anew.

    .venv/bin/python benchmarks/server.py
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import openai
import uvicorn
from openai_harmony import Role

from harmony_agent import Agent, PolicyModel
from harmony_agent.server import ServerConfig, create_app

ANSWER = (
    "<|channel|>analysis<|message|>Short.<|end|><|start|>assistant<|channel|>final<|message|>A short answer.<|return|>"
)
CONCURRENCY = (1, 8, 32)
REQUESTS_PER_CLIENT = 8


def answer(messages):
    return ANSWER


def start_server(config: ServerConfig | None = None) -> tuple[uvicorn.Server, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(config or ServerConfig(PolicyModel(answer)))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}/v1"


async def one_client(client: openai.AsyncOpenAI, first_tokens: list[float], totals: list[float]) -> None:
    for _ in range(REQUESTS_PER_CLIENT):
        started = time.perf_counter()
        stream = await client.responses.create(model="gpt-oss", input="Say something short.", stream=True, store=False)
        first = None
        async for event in stream:
            if first is None and event.type == "response.output_text.delta":
                first = time.perf_counter() - started
        first_tokens.append(first or float("nan"))
        totals.append(time.perf_counter() - started)


async def load(url: str, clients: int) -> tuple[float, list[float], list[float]]:
    first_tokens: list[float] = []
    totals: list[float] = []
    async with openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one_client(client, first_tokens, totals) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return clients * REQUESTS_PER_CLIENT / elapsed, first_tokens, totals


def in_process(n: int = 40) -> float:
    agent = Agent(PolicyModel(answer))
    times = []
    for _ in range(n):
        session = agent.session()
        started = time.perf_counter()
        session.run("Say something short.")
        times.append(time.perf_counter() - started)
        session.close()
    agent.close()
    return statistics.median(times)


# -- part two: a conversation, as each kind of client holds it -------------------

TURNS = 6
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CHAT_WEATHER = {"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}


def weather_policy(messages):
    last = messages[-1]
    text = last.content[0].text if last.content else ""
    if last.author.role == Role.TOOL:
        return "<|channel|>analysis<|message|>Report it.<|end|><|start|>assistant<|channel|>final<|message|>" + (
            f"It is {text}.<|return|>"
        )
    city = text.rsplit(" ", 1)[-1].rstrip("?")
    return (
        "<|channel|>analysis<|message|>Look it up.<|end|><|start|>assistant<|channel|>commentary "
        f'to=functions.get_weather <|constrain|>json<|message|>{{"city": "{city}"}}<|call|>'
    )


class PrefixCached(PolicyModel):
    """A policy behind a prefix cache of every prompt seen: it reports what a caching backend would prefill."""

    def __init__(self, policy):
        super().__init__(policy)
        self._seen: list[list[int]] = []
        #: What a one-slot cache (llama.cpp's default, the in-process transformers model) would prefill, per prompt.
        self.one_slot: list[int] = []

    async def generate(self, prompt, *, stop, sampling):
        prompt = list(prompt)
        reused = max((_common(prompt, seen) for seen in self._seen), default=0)
        self.one_slot.append(len(prompt) - (_common(prompt, self._seen[-1]) if self._seen else 0))
        self._seen = [*self._seen[-63:], prompt]
        first = True
        async for token in super().generate(prompt, stop=stop, sampling=sampling):
            if first:
                self.last_stats.cached_tokens = reused
                self.last_stats.prefilled_tokens = len(prompt) - reused
                first = False
            yield token


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def question(turn: int, conversation: int = 0) -> str:
    return f"Conversation {conversation}, turn {turn}: what is the weather in City{turn}?"


def by_previous_response_id(c: openai.OpenAI, conversation: int = 0):
    previous = None
    for turn in range(TURNS):
        reply = c.responses.create(
            model="gpt-oss", input=question(turn, conversation), tools=[WEATHER], previous_response_id=previous
        )
        yield reply.usage.input_tokens, reply.usage.input_tokens_details.cached_tokens
        [fc] = [item for item in reply.output if item.type == "function_call"]
        output = [{"type": "function_call_output", "call_id": fc.call_id, "output": "3 degrees"}]
        reply = c.responses.create(model="gpt-oss", input=output, tools=[WEATHER], previous_response_id=reply.id)
        yield reply.usage.input_tokens, reply.usage.input_tokens_details.cached_tokens
        previous = reply.id


def stateless_responses(c: openai.OpenAI, conversation: int = 0):
    items: list = []
    for turn in range(TURNS):
        items.append({"role": "user", "content": question(turn, conversation)})
        reply = c.responses.create(model="gpt-oss", input=items, tools=[WEATHER], store=False)
        yield reply.usage.input_tokens, reply.usage.input_tokens_details.cached_tokens
        items += [item.model_dump(exclude_none=True) for item in reply.output]
        [fc] = [item for item in reply.output if item.type == "function_call"]
        items.append({"type": "function_call_output", "call_id": fc.call_id, "output": "3 degrees"})
        reply = c.responses.create(model="gpt-oss", input=items, tools=[WEATHER], store=False)
        yield reply.usage.input_tokens, reply.usage.input_tokens_details.cached_tokens
        items += [item.model_dump(exclude_none=True) for item in reply.output]


def chat_completions(c: openai.OpenAI, conversation: int = 0):
    messages: list = []
    for turn in range(TURNS):
        messages.append({"role": "user", "content": question(turn, conversation)})
        reply = c.chat.completions.create(model="gpt-oss", messages=messages, tools=[CHAT_WEATHER])
        yield reply.usage.prompt_tokens, reply.usage.prompt_tokens_details.cached_tokens
        message = reply.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "3 degrees"})
        reply = c.chat.completions.create(model="gpt-oss", messages=messages, tools=[CHAT_WEATHER])
        yield reply.usage.prompt_tokens, reply.usage.prompt_tokens_details.cached_tokens
        messages.append(reply.choices[0].message.model_dump(exclude_none=True))


def evicted(c: openai.OpenAI):
    """Two stateless conversations, interleaved, on a server that holds one: each request finds its own gone."""
    mine, other = stateless_responses(c, 0), stateless_responses(c, 1)
    for pair in zip(mine, other):
        yield pair[0]


def conversation_costs() -> None:
    clients = [
        ("previous_response_id", by_previous_response_id, 64),
        ("stateless Responses", stateless_responses, 64),
        ("Chat Completions", chat_completions, 64),
        ("stateless, not held", evicted, 1),
    ]
    print(f"\none conversation of {TURNS} turns (a function call and its answer each: 2 requests a turn)")
    print(
        f"{'client':<22} {'input tok/req':>14} {'prefill tok/req':>16} {'prefill, last turn':>19} "
        f"{'one-slot prefill/gen':>21} {'ms/req':>8}"
    )
    warm, url = start_server(ServerConfig(PrefixCached(weather_policy)))
    try:  # imports, the encoding, the first connections
        list(chat_completions(openai.OpenAI(base_url=url, api_key="x", max_retries=0)))
    finally:
        warm.should_exit = True
    for name, run, held in clients:
        model = PrefixCached(weather_policy)
        server, url = start_server(ServerConfig(model, max_conversations=held))
        try:
            c = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
            started = time.perf_counter()
            costs = list(run(c))
            requests = len(costs) * (2 if held == 1 else 1)  # the evicting conversation's requests too
            per_request = (time.perf_counter() - started) / requests
        finally:
            server.should_exit = True
        inputs = [total for total, _ in costs]
        prefills = [total - cached for total, cached in costs]
        print(
            f"{name:<22} {statistics.mean(inputs):>14.0f} {statistics.mean(prefills):>16.0f} "
            f"{sum(prefills[-2:]):>19} {statistics.mean(model.one_slot):>21.0f} {per_request * 1000:>8.1f}"
        )


def main() -> None:
    conversation_costs()
    server, url = start_server()
    try:
        asyncio.run(load(url, 1))  # warm-up: imports, the encoding, the first connections
        direct = in_process()
        print(f"in-process Agent, new session per task: median {direct * 1000:.1f} ms")
        print(
            f"{'clients':>8} {'req/s':>8} {'TTFT p50':>10} {'TTFT p95':>10} {'total p50':>10} {'overhead vs in-process':>24}"
        )
        for clients in CONCURRENCY:
            rate, first, total = asyncio.run(load(url, clients))
            p50, p95 = statistics.median(first), statistics.quantiles(first, n=20)[-1]
            total50 = statistics.median(total)
            print(
                f"{clients:>8} {rate:>8.1f} {p50 * 1000:>8.1f}ms {p95 * 1000:>8.1f}ms {total50 * 1000:>8.1f}ms "
                f"{total50 / direct:>23.2f}x"
            )
    finally:
        server.should_exit = True


if __name__ == "__main__":
    main()
