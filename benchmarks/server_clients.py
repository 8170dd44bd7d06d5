"""What each kind of OpenAI client costs per request: one conversation, four ways of holding it.

One conversation of several turns, each a function call and its answer, as four clients hold it:
``previous_response_id``; a stateless Responses client sending the whole conversation (the server
continues the session it holds); Chat Completions (the same); and a stateless client whose
conversation the server no longer holds (more conversations than ``max_conversations``), so every
request is rebuilt from its items. The model is a policy behind a prefix cache that remembers every
prompt it saw (as vLLM's prefix caching does): its prefill count per request is what a caching
backend would compute anew; the one-slot column is what llama.cpp's single slot would.

    .venv/bin/python benchmarks/server_clients.py [--quick]

``--quick`` holds a conversation of 2 turns instead of 6. ``benchmarks/server.py`` measures the
server's own overhead under load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import openai
from openai_harmony import Role

from harmony_agent import PolicyModel
from harmony_agent.server import ServerConfig
from helpers.serving import running

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


def by_previous_response_id(c: openai.OpenAI, conversation: int = 0, turns: int = TURNS):
    previous = None
    for turn in range(turns):
        reply = c.responses.create(
            model="gpt-oss", input=question(turn, conversation), tools=[WEATHER], previous_response_id=previous
        )
        yield reply.usage.input_tokens, reply.usage.input_tokens_details.cached_tokens
        [fc] = [item for item in reply.output if item.type == "function_call"]
        output = [{"type": "function_call_output", "call_id": fc.call_id, "output": "3 degrees"}]
        reply = c.responses.create(model="gpt-oss", input=output, tools=[WEATHER], previous_response_id=reply.id)
        yield reply.usage.input_tokens, reply.usage.input_tokens_details.cached_tokens
        previous = reply.id


def stateless_responses(c: openai.OpenAI, conversation: int = 0, turns: int = TURNS):
    items: list = []
    for turn in range(turns):
        items.append({"role": "user", "content": question(turn, conversation)})
        reply = c.responses.create(model="gpt-oss", input=items, tools=[WEATHER], store=False)
        yield reply.usage.input_tokens, reply.usage.input_tokens_details.cached_tokens
        items += [item.model_dump(exclude_none=True) for item in reply.output]
        [fc] = [item for item in reply.output if item.type == "function_call"]
        items.append({"type": "function_call_output", "call_id": fc.call_id, "output": "3 degrees"})
        reply = c.responses.create(model="gpt-oss", input=items, tools=[WEATHER], store=False)
        yield reply.usage.input_tokens, reply.usage.input_tokens_details.cached_tokens
        items += [item.model_dump(exclude_none=True) for item in reply.output]


def chat_completions(c: openai.OpenAI, conversation: int = 0, turns: int = TURNS):
    messages: list = []
    for turn in range(turns):
        messages.append({"role": "user", "content": question(turn, conversation)})
        reply = c.chat.completions.create(model="gpt-oss", messages=messages, tools=[CHAT_WEATHER])
        yield reply.usage.prompt_tokens, reply.usage.prompt_tokens_details.cached_tokens
        message = reply.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "3 degrees"})
        reply = c.chat.completions.create(model="gpt-oss", messages=messages, tools=[CHAT_WEATHER])
        yield reply.usage.prompt_tokens, reply.usage.prompt_tokens_details.cached_tokens
        messages.append(reply.choices[0].message.model_dump(exclude_none=True))


def evicted(c: openai.OpenAI, conversation: int = 0, turns: int = TURNS):
    """Two stateless conversations, interleaved, on a server that holds one: each request finds its own gone."""
    mine, other = stateless_responses(c, 0, turns), stateless_responses(c, 1, turns)
    for pair in zip(mine, other):
        yield pair[0]


def conversation_costs(turns: int = TURNS) -> None:
    clients = [
        ("previous_response_id", by_previous_response_id, 64),
        ("stateless Responses", stateless_responses, 64),
        ("Chat Completions", chat_completions, 64),
        ("stateless, not held", evicted, 1),
    ]
    print(f"\none conversation of {turns} turns (a function call and its answer each: 2 requests a turn)")
    print(
        f"{'client':<22} {'input tok/req':>14} {'prefill tok/req':>16} {'prefill, last turn':>19} "
        f"{'one-slot prefill/gen':>21} {'ms/req':>8}"
    )
    with running(ServerConfig(PrefixCached(weather_policy))) as url:  # imports, the encoding, first connections
        list(chat_completions(openai.OpenAI(base_url=url, api_key="x", max_retries=0), 0, 1))
    for name, run, held in clients:
        model = PrefixCached(weather_policy)
        with running(ServerConfig(model, max_conversations=held)) as url:
            c = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
            started = time.perf_counter()
            costs = list(run(c, 0, turns))
            requests = len(costs) * (2 if held == 1 else 1)  # the evicting conversation's requests too
            per_request = (time.perf_counter() - started) / requests
        inputs = [total for total, _ in costs]
        prefills = [total - cached for total, cached in costs]
        print(
            f"{name:<22} {statistics.mean(inputs):>14.0f} {statistics.mean(prefills):>16.0f} "
            f"{sum(prefills[-2:]):>19} {statistics.mean(model.one_slot):>21.0f} {per_request * 1000:>8.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a conversation of 2 turns")
    conversation_costs(2 if parser.parse_args().quick else TURNS)


if __name__ == "__main__":
    main()
