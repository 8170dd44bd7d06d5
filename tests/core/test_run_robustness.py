"""Nothing that comes back can crash a run: bad text, huge results, raising tools, broken backends, slow hooks."""

from __future__ import annotations

import asyncio
import time

import pytest

from harmony_agent import Agent, ScriptedModel
from harmony_agent.harmony.encoding import encode_completion
from harmony_agent.models import Model
from harmony_agent.models.base import GenerationStats
from harmony_agent.tools import function_tool
from helpers.completions import RecordingModel, call, final


def tool_result(result):
    return next(e for e in result.events if e.type == "tool_result")


@pytest.mark.parametrize("where", ["return value", "exception message", "user task"])
def test_a_lone_surrogate_never_breaks_rendering(where):
    @function_tool
    def read(path: str) -> str:
        """Read."""
        if where == "exception message":
            raise OSError("cannot open bad\udcff name")
        return "file \ud800 name"

    model = RecordingModel([call("read", '{"path": "x"}'), final("done")], as_text=True)
    task = "look at \udcff" if where == "user task" else "look"
    result = Agent(model, tools=[read]).run(task)
    assert result.final_text == "done", result.error
    assert "\ufffd" in model.prompts[1]


@pytest.mark.parametrize("exc", [SystemExit(2), KeyboardInterrupt(), GeneratorExit(), asyncio.CancelledError()])
def test_base_exceptions_from_tools_are_contained(exc):
    @function_tool
    def parse(argv: str) -> str:
        """argparse-like."""
        raise exc

    result = Agent(ScriptedModel([call("parse", '{"argv": "-h"}'), final("ok")]), tools=[parse]).run("x")
    assert result.final_text == "ok"
    assert tool_result(result).is_error


def test_a_huge_result_is_cut_before_tokenizing_and_the_model_sees_head_and_tail():
    @function_tool
    def dump() -> str:
        """Dump."""
        return "HEAD" + "a" * 1_000_000 + "TAIL"

    model = RecordingModel([call("dump", "{}"), final("ok")], as_text=True)
    started = time.perf_counter()
    result = Agent(model, tools=[dump], max_result_chars=20_000).run("x")
    assert result.final_text == "ok" and time.perf_counter() - started < 30
    seen = model.prompts[1]
    assert "HEAD" in seen and "TAIL" in seen and "characters cut from this result" in seen
    assert len(tool_result(result).content) < 21_000


class BadTokens(Model):
    name = "bad"

    def __init__(self, tokens):
        super().__init__()
        self.tokens = tokens

    async def generate(self, prompt, *, stop, sampling):
        self.last_stats = GenerationStats(prompt_tokens=len(prompt), prefilled_tokens=len(prompt))
        for token in self.tokens:
            yield token


@pytest.mark.parametrize("token", [999_999, -1, "x", 1.5])
def test_token_ids_outside_the_vocabulary_are_a_model_error(token):
    result = Agent(BadTokens([*encode_completion("<|channel|>final<|message|>hi"), token])).run("x")
    assert result.stop_reason == "model_error"
    assert "not a token id" in result.error


def test_a_completion_that_just_ends_is_reported_as_such_not_as_a_full_window():
    result = Agent(BadTokens(encode_completion("<|channel|>final<|message|>cut sh")), max_tokens=500).run("x")
    assert result.stop_reason == "model_error"
    assert "without a stop token" in result.error and "cut the completion short" in result.error


def test_function_tool_timeouts_sync_and_async():
    @function_tool(timeout=0.3)
    def slow_sync() -> str:
        """Slow."""
        time.sleep(3)
        return "late"

    @function_tool(timeout=0.3)
    async def slow_async() -> str:
        """Slow."""
        await asyncio.sleep(30)
        return "late"

    model = ScriptedModel([call("slow_sync", "{}"), call("slow_async", "{}"), final("gave up")])
    started = time.perf_counter()
    result = Agent(model, tools=[slow_sync, slow_async]).run("x")
    assert result.final_text == "gave up" and time.perf_counter() - started < 5
    results = [e for e in result.events if e.type == "tool_result"]
    assert all(r.is_error and "did not finish within 0.3 s" in r.content for r in results)


def test_approval_hook_timeout_refuses_with_a_message(weather_tool):
    def never_answers(call):
        time.sleep(3)
        return True

    model = ScriptedModel([call("get_weather", '{"city": "Paris"}'), final("ok")])
    result = Agent(model, tools=[weather_tool], approve=never_answers, approval_timeout=0.3).run("x")
    assert result.final_text == "ok"
    refused = tool_result(result)
    assert refused.refused and "no approval came within 0.3 s" in refused.content


def test_result_carries_the_error_that_ended_the_run():
    result = Agent(ScriptedModel([])).run("x")
    assert result.stop_reason == "model_error" and result.error and "no completion left" in result.error
    assert Agent(ScriptedModel([final("ok")])).run("x").error is None


def test_backend_retries_are_events_of_the_run():
    from harmony_agent.models.base import Retry

    class Flaky(Model):
        name = "flaky"

        async def generate(self, prompt, *, stop, sampling):
            self.last_stats = GenerationStats(prompt_tokens=len(prompt), prefilled_tokens=len(prompt))
            self.last_stats.retries.append(Retry(attempt=1, reason="HTTP 503: loading", delay_s=0.0))
            for token in encode_completion(final("ok")):
                yield token

    result = Agent(Flaky()).run("x")
    assert result.final_text == "ok"
    [retry] = [e for e in result.events if e.type == "error" and e.kind == "retry"]
    assert "HTTP 503: loading" in retry.message and retry.recovered
