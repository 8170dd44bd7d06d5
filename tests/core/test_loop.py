"""Budgets, approvals, events, the policy model and transcripts."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from openai_harmony import Role

from harmony_agent import Agent, PolicyModel, ScriptedModel, events, read_transcript
from harmony_agent.models import ModelError, load_model
from helpers.completions import call, final

WEATHER_CALL = call("get_weather", '{"city":"Paris"}')


def test_result_has_final_text_messages_steps_usage_and_stop_reason(weather_tool):
    result = Agent(ScriptedModel([WEATHER_CALL, final("21 in Paris")]), tools=[weather_tool]).run("weather?")
    assert result.final_text == "21 in Paris" and result.stop_reason == "final" and result.ok
    assert result.steps == 2
    assert result.usage.generations == 2 and result.usage.completion_tokens > 10 and result.usage.prompt_tokens > 100
    roles = [m.author.role for m in result.messages]
    assert roles[:3] == [Role.SYSTEM, Role.DEVELOPER, Role.USER] and Role.TOOL in roles


async def test_stream_yields_typed_events_in_order(weather_tool):
    agent = Agent(
        ScriptedModel(["<|channel|>analysis<|message|>hmm<|end|><|start|>assistant" + WEATHER_CALL, final("done")]),
        tools=[weather_tool],
    )
    kinds = []
    deltas = {}
    async for event in agent.stream("weather?"):
        kinds.append(event.type)
        if isinstance(event, events.TokenDeltaEvent):
            deltas.setdefault(event.channel, "")
            deltas[event.channel] += event.text
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("final")
    assert deltas["analysis"] == "hmm" and deltas["final"] == "done"
    assert agent.last_result.final_text == "done"


def test_max_steps_budget(weather_tool):
    result = Agent(ScriptedModel([WEATHER_CALL] * 5), tools=[weather_tool], max_steps=3).run("loop")
    assert result.stop_reason == "max_steps" and result.steps == 3 and result.final_text is None


def test_max_tokens_budget():
    long = "<|channel|>final<|message|>" + "word " * 200 + "<|return|>"
    result = Agent(ScriptedModel([long]), max_tokens=20).run("talk")
    assert result.stop_reason == "max_tokens"
    assert result.usage.completion_tokens == 20
    assert any(e.type == "error" and e.kind == "budget" for e in result.events)


def test_context_window_budget():
    result = Agent(ScriptedModel([final("x")]), context_window=50).run("hello")
    assert result.stop_reason == "context_window" and result.usage.generations == 0


def test_context_window_caps_generation():
    # The prompt leaves 30 tokens of room: generation stops there with the context budget.
    from harmony_agent.history import History

    agent = Agent(ScriptedModel(["<|channel|>final<|message|>" + "word " * 200 + "<|return|>"]), max_tokens=1000)
    history = History(agent.preamble())
    history.add_user("hi")
    agent.context_window = len(history.prompt()) + 30
    result = agent.run("hi")
    assert result.stop_reason == "context_window"
    assert result.usage.completion_tokens == 30
    assert result.usage.prompt_tokens + result.usage.completion_tokens == agent.context_window


def test_model_error_is_a_stop_reason_not_a_crash():
    result = Agent(ScriptedModel([call("nothing", "{}")])).run("go")
    assert result.stop_reason == "model_error"
    assert any(e.type == "error" and "no completion left" in e.message for e in result.events)


def test_default_sampling_is_gpt_oss_recommendation():
    agent = Agent(ScriptedModel([final("x")]))
    assert agent.sampling.temperature == 1.0 and agent.sampling.top_p == 1.0


@pytest.mark.parametrize(
    "verdict,expected",
    [
        (False, "did not approve"),
        ("too expensive", "too expensive"),
    ],
)
def test_approval_refusal_goes_back_to_model(weather_tool, verdict, expected):
    calls = []

    def approve(c):
        calls.append(c.recipient)
        return verdict

    result = Agent(ScriptedModel([WEATHER_CALL, final("ok")]), tools=[weather_tool], approve=approve).run("w")
    assert calls == ["functions.get_weather"]
    tool_result = next(e for e in result.events if e.type == "tool_result")
    assert tool_result.refused and tool_result.is_error and expected in tool_result.content
    assert expected in [m for m in result.messages if m.author.role == Role.TOOL][0].content[0].text


def test_async_approval_and_broken_hook(weather_tool):
    async def allow(c):
        await asyncio.sleep(0)
        return True

    ok = Agent(ScriptedModel([WEATHER_CALL, final("ok")]), tools=[weather_tool], approve=allow).run("w")
    assert not next(e for e in ok.events if e.type == "tool_result").is_error

    def broken(c):
        raise RuntimeError("hook bug")

    refused = Agent(ScriptedModel([WEATHER_CALL, final("ok")]), tools=[weather_tool], approve=broken).run("w")
    assert "hook bug" in next(e for e in refused.events if e.type == "tool_result").content
    assert refused.stop_reason == "final"


def test_policy_model_sees_the_conversation_as_messages(weather_tool):
    seen = []

    def policy(messages):
        seen.append([(m.author.role.value, m.channel, m.recipient) for m in messages])
        if not any(m.author.role == Role.TOOL for m in messages):
            return WEATHER_CALL
        temperature = json.loads(messages[-1].content[0].text)["temperature"]
        return final(f"It is {temperature} degrees.")

    result = Agent(PolicyModel(policy), tools=[weather_tool]).run("weather?")
    assert result.final_text == "It is 21 degrees."
    assert seen[0][-1][0] == "user"
    assert ("assistant", "commentary", "functions.get_weather") in seen[1]
    assert seen[1][-1][0] == "tool"


async def test_async_policy_and_bad_policy_output():
    async def policy(messages):
        return final("async ok")

    assert (await Agent(PolicyModel(policy)).arun("x")).final_text == "async ok"
    bad = await Agent(PolicyModel(lambda m: 42)).arun("x")
    assert bad.stop_reason == "model_error"


def test_run_inside_a_running_event_loop_works_as_in_a_notebook():
    # Jupyter runs cells inside an event loop: run() must still work there (the session has a loop of its own).
    async def inner():
        agent = Agent(ScriptedModel([final("x")]))
        return agent.run("x").final_text

    assert asyncio.run(inner()) == "x"


def test_load_model_specs(tmp_path):
    script = tmp_path / "s.yaml"
    script.write_text("completions:\n  - '<|channel|>final<|message|>hi<|return|>'\n")
    assert isinstance(load_model(f"scripted:{script}"), ScriptedModel)
    assert load_model("http://127.0.0.1:9/v1").base_url == "http://127.0.0.1:9"
    assert load_model("ollama+http://127.0.0.1:9#gpt-oss:20b").flavor == "ollama"
    with pytest.raises(ModelError, match="unknown model spec"):
        load_model("nonsense")
    with pytest.raises(ModelError, match="not found"):
        load_model(f"scripted:{tmp_path / 'missing.yaml'}")
    bad = tmp_path / "bad.yaml"
    bad.write_text("completions: 3\n")
    with pytest.raises(ModelError, match="list of strings"):
        load_model(f"scripted:{bad}")


def test_transcript_records_every_event_with_tokens_and_timing(tmp_path, weather_tool):
    path = tmp_path / "run.jsonl"
    result = Agent(ScriptedModel([WEATHER_CALL, final("ok")]), tools=[weather_tool], transcript=path).run("w")
    saved = list(read_transcript(path, strict=True))
    # One record per generation: the token deltas that streamed it are for live listeners only.
    assert [e.type for e in saved] == [e.type for e in result.events if e.type != "token"]
    generation = next(e for e in saved if e.type == "generation")
    assert generation.token_ids and generation.token_ids[-1] == 200012
    tool_result = next(e for e in saved if e.type == "tool_result")
    assert tool_result.duration_s >= 0 and "temperature" in tool_result.content


@pytest.mark.slow  # a subprocess killed mid-run
def test_killed_run_keeps_completed_steps(tmp_path):
    """SIGKILL mid-run: every step completed before the kill is in the transcript."""
    path = tmp_path / "killed.jsonl"
    marker = tmp_path / "third-call-started"
    script = textwrap.dedent(f"""
        import pathlib, time
        from harmony_agent import Agent, ScriptedModel
        from harmony_agent.tools import function_tool

        calls = 0
        @function_tool
        def slow(n: int) -> str:
            global calls
            calls += 1
            if calls == 3:
                pathlib.Path({str(marker)!r}).touch()
                time.sleep(60)
            return f"step {{n}} done"

        c = lambda n: '<|channel|>commentary to=functions.slow <|constrain|>json<|message|>{{"n": %d}}<|call|>' % n
        Agent(ScriptedModel([c(1), c(2), c(3), c(4)]), tools=[slow], transcript={str(path)!r}).run("go")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=os.getcwd())
    try:
        deadline = time.time() + 30
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the scripted run did not reach its third call"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    saved = list(read_transcript(path))
    results = [e.content for e in saved if e.type == "tool_result"]
    assert results == ["step 1 done", "step 2 done"]
    assert [e.recipient for e in saved if e.type == "tool_call"] == ["functions.slow"] * 3


def test_torn_transcript_line_is_skipped(tmp_path):
    path = tmp_path / "t.jsonl"
    Agent(ScriptedModel([final("ok")]), transcript=path).run("x")
    with open(path, "a") as f:
        f.write('{"type": "tool_res')
    assert [e.type for e in read_transcript(path, strict=True)][-1] == "run_end"


def test_unexpected_backend_exception_is_a_model_error_stop():
    class Broken(ScriptedModel):
        async def generate(self, prompt, *, stop, sampling):
            yield 200005
            raise OSError("device lost")

    result = Agent(Broken([])).run("x")
    assert result.stop_reason == "model_error"
    assert "OSError: device lost" in next(e for e in result.events if e.type == "error").message


def test_transcript_keeps_one_record_per_generation_and_replay_prints_the_run(tmp_path, weather_tool):
    from rich.console import Console

    from harmony_agent.cli.console import ConsoleView

    path = tmp_path / "run.jsonl"
    script = [
        "<|channel|>analysis<|message|>Need the weather first.<|end|><|start|>assistant" + WEATHER_CALL,
        final("It is 21."),
    ]
    live = Console(record=True, width=200)
    view = ConsoleView(live)
    agent = Agent(ScriptedModel(script), tools=[weather_tool], transcript=path)

    async def watch():
        async for event in agent.stream("w"):
            view.handle(event)

    asyncio.run(watch())
    agent.close()
    lines = path.read_text().splitlines()
    saved = [json.loads(line) for line in lines]
    assert not any(e["type"] == "token" for e in saved)
    generations = [e for e in saved if e["type"] == "generation"]
    assert generations[0]["messages"][0] == {
        "channel": "analysis",
        "recipient": None,
        "text": "Need the weather first.",
    }
    assert generations[0]["messages"][1]["recipient"] == "functions.get_weather"
    replayed = Console(record=True, width=200)
    replay_view = ConsoleView(replayed)
    for event in read_transcript(path, strict=True):
        replay_view.handle(event)
    assert replayed.export_text() == live.export_text()  # replay prints the run as it looked


def test_transcript_can_keep_deltas_when_asked(tmp_path):
    from harmony_agent import Transcript

    path = tmp_path / "deltas.jsonl"
    Agent(ScriptedModel([final("hi there")]), transcript=Transcript(path, deltas=True)).run("x")
    assert any(json.loads(line)["type"] == "token" for line in path.read_text().splitlines())


def test_generation_event_carries_the_backends_prefill_seconds():
    """The prefill time a backend measured reaches the event (benchmarks/gguf_20b.py derives decode speed from it)."""

    class TimedModel(ScriptedModel):
        async def generate(self, prompt, *, stop, sampling):
            async for token in super().generate(prompt, stop=stop, sampling=sampling):
                self.last_stats.prefill_seconds = 0.25
                yield token

    result = Agent(TimedModel([final("done")])).run("hi")
    generation = next(e for e in result.events if e.type == "generation")
    assert generation.prefill_s == 0.25 and generation.duration_s >= 0
