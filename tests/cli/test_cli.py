"""The harmony-agent command, as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harmony_agent.cli.app import app
from helpers import ROOT

runner = CliRunner()


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_run_task_file_streams_and_answers(tmp_path):
    transcript = tmp_path / "t.jsonl"
    result = runner.invoke(app, ["run", "examples/weather_task.yaml", "--yes", "--transcript", str(transcript)])
    assert result.exit_code == 0, result.output
    assert "→ functions.get_weather" in result.output
    assert "Paris is 18 °C and Oslo is 4 °C" in result.output
    assert "stop: final" in result.output
    types = [json.loads(line)["type"] for line in transcript.read_text().splitlines()]
    assert types[0] == "run_start" and types[-1] == "run_end" and types.count("tool_call") == 2

    replayed = runner.invoke(app, ["replay", str(transcript)])
    assert replayed.exit_code == 0
    assert "Paris is 18 °C and Oslo is 4 °C" in replayed.output and "← functions.get_weather" in replayed.output


def test_an_in_process_run_gives_back_the_callers_sigterm_handler():
    """The CLI turns SIGTERM into a clean exit while it runs, and only then (a host program keeps its own)."""
    import signal

    def mine(*_):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        result = runner.invoke(app, ["run", "examples/weather_task.yaml", "--yes"])
        assert result.exit_code == 0, result.output
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_run_with_flags_overrides_and_refuses_without_yes():
    result = runner.invoke(
        app,
        [
            "run",
            "How warm is Paris?",
            "--model",
            "scripted:examples/weather_demo.yaml",
            "--tools",
            "examples.weather:get_weather",
            "--reasoning",
            "high",
            "--max-steps",
            "1",
        ],
    )
    # One step allowed, and no terminal to approve on: the call is refused and the budget ends the run.
    assert result.exit_code == 1
    assert "refused" in result.output and "stop: max_steps" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "x", "--model", "nonsense"], "unknown model spec"),
        (["run", "x", "--model", "scripted:examples/weather_demo.yaml", "--tools", "nosuchtool"], "unknown tool"),
        (
            ["run", "x", "--model", "scripted:examples/weather_demo.yaml", "--tools", "nosuchmod:f"],
            "cannot import tool",
        ),
        (["run", "missing.yaml"], "not found"),
        (["run", "x", "--model", "scripted:examples/weather_demo.yaml", "--reasoning", "extreme"], "--reasoning"),
        (["replay", "nowhere.jsonl"], "no transcript"),
    ],
)
def test_bad_input_is_a_clear_error(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_bad_task_file_and_bad_transcript(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: hi\nbogus: 1\n")
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2 and "unknown keys" in result.output
    bad.write_text("task: hi\nmax_steps: lots\n")
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2 and "max_steps must be a positive whole number" in result.output
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"type": "nope"}\n{"type": "final", "text": "x"}\n')
    result = runner.invoke(app, ["replay", str(junk)])
    assert result.exit_code == 2 and "junk.jsonl:1" in result.output


def test_doctor_reports_each_component():
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    for name in (
        "vocabulary",
        "torch",
        "transformers",
        "model files",
        "docker engine",
        "chromium",
        "Xvfb",
        "tesseract",
    ):
        assert name in result.output
    assert "ok" in result.output


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "harmony-agent"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "replay" in out.stdout and "doctor" in out.stdout


def test_chat_keeps_the_conversation_between_turns(tmp_path):
    script = tmp_path / "chat.yaml"
    script.write_text(
        "completions:\n"
        "  - '<|channel|>analysis<|message|>THOUGHT-ONE<|end|><|start|>assistant<|channel|>final<|message|>First answer.<|return|>'\n"
        "  - '<|channel|>final<|message|>Second answer.<|return|>'\n"
    )
    transcript = tmp_path / "chat.jsonl"
    result = runner.invoke(
        app, ["chat", "-m", f"scripted:{script}", "--transcript", str(transcript)], input="hi\nagain\n\n"
    )
    assert result.exit_code == 0, result.output
    assert "First answer." in result.output and "Second answer." in result.output
    starts = [json.loads(line) for line in transcript.read_text().splitlines() if '"run_start"' in line]
    gens = [json.loads(line) for line in transcript.read_text().splitlines() if '"generation"' in line]
    assert [s["task"] for s in starts] == ["hi", "again"]
    # The second turn continues the conversation: its prompt holds the first turn.
    assert gens[1]["prompt_tokens"] > gens[0]["prompt_tokens"]
