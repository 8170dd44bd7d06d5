"""The CLI for scripts and for people watching: streaming, --quiet, --json, stdin, exit codes, config, bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harmony_agent.cli.app import app
from harmony_agent.models import ModelError, OpenAICompatibleModel, load_model
from helpers.cli_support import ROOT, FakeOllama, cli_env, run_cli

runner = CliRunner()
WEATHER = ["run", "examples/weather_task.yaml", "--yes"]
FINAL = "<|channel|>final<|message|>{text}<|return|>"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Each test runs in the repository with a config folder of its own (no user's config leaks in)."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("HARMONY_AGENT_CONFIG", raising=False)


def _script(tmp_path: Path, completions: list[str]) -> str:
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"completions": completions}))
    return f"scripted:{path}"


# -- watching a run ----------------------------------------------------------------------------------------------------


def _read_until(stream, needle: str, timeout: float = 60) -> str:
    """Read a pipe byte by byte until ``needle`` shows (the CLI must have flushed it)."""
    seen = b""
    deadline = time.monotonic() + timeout
    os.set_blocking(stream.fileno(), False)
    while needle.encode() not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} did not appear; got {seen.decode(errors='replace')!r}")
        chunk = stream.read(4096)
        if chunk:
            seen += chunk
        else:
            time.sleep(0.02)
    return seen.decode(errors="replace")


def test_final_answer_and_call_arguments_stream_while_the_model_is_still_writing(tmp_path):
    """The server holds each completion half-way: the first half must be on screen before the rest is sent."""
    (tmp_path / "wtools.py").write_text(
        "def get_weather(city: str) -> dict:\n    '''Weather.\n\n    Args:\n        city: A city.\n    '''\n"
        "    return {'city': city, 'temperature': 18}\n"
    )
    call = [
        '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Par',
        None,
        'is"}<|call|>',
    ]
    final = ["<|channel|>final<|message|>Paris is at", None, " 18 degrees.<|return|>"]
    with FakeOllama([call, final]) as server:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harmony_agent.cli",
                "run",
                "Weather in Paris?",
                "-m",
                f"ollama+http://127.0.0.1:{server.port}#gpt-oss:20b",
                "-t",
                "wtools:get_weather",
                "--yes",
            ],
            cwd=tmp_path,
            env=cli_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            shown = _read_until(proc.stdout, '→ functions.get_weather {"city": "Par')
            assert 'is"}' not in shown  # the rest of the arguments is still held by the server
            server.release()
            shown += _read_until(proc.stdout, "Paris is at")
            assert "18 degrees" not in shown
            server.release()
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    text = shown + out.decode()
    assert "18 degrees." in text and text.count("Paris is at") == 1  # streamed, not printed again at the end
    assert text.count("→ functions.get_weather") == 1


@pytest.mark.slow  # CLI runs in subprocesses
def test_long_results_are_shortened_on_screen_and_whole_with_verbose(tmp_path):
    (tmp_path / "big.py").write_text("def big() -> str:\n    '''A long page.'''\n    return 'x' * 5000 + 'THE-END'\n")
    model = _script(
        tmp_path,
        ["<|channel|>commentary to=functions.big <|constrain|>json<|message|>{}<|call|>", FINAL.format(text="ok")],
    )
    transcript = tmp_path / "t.jsonl"
    args = ["run", "go", "-m", model, "-t", "big:big", "--yes", "--transcript", str(transcript)]
    short = run_cli(args, cwd=tmp_path, env=cli_env(tmp_path))
    assert short.returncode == 0, short.stderr
    assert "THE-END" not in short.stdout and "more characters; --verbose shows all" in short.stdout
    result = next(json.loads(line) for line in transcript.read_text().splitlines() if '"tool_result"' in line)
    assert result["content"].endswith("THE-END")  # the transcript keeps it whole
    model = _script(
        tmp_path,
        ["<|channel|>commentary to=functions.big <|constrain|>json<|message|>{}<|call|>", FINAL.format(text="ok")],
    )
    whole = run_cli([*args[:-2], "--verbose"], cwd=tmp_path, env=cli_env(tmp_path))
    assert "THE-END" in whole.stdout and "--verbose shows all" not in whole.stdout


# -- output for scripts ------------------------------------------------------------------------------------------------


def test_quiet_prints_only_the_final_answer():
    result = runner.invoke(app, [*WEATHER, "--quiet"])
    assert result.exit_code == 0
    assert result.stdout == "Paris is 18 °C and Oslo is 4 °C, so Paris is 14 degrees warmer.\n"


def test_json_prints_one_object_with_the_outcome(tmp_path):
    transcript = tmp_path / "w.jsonl"
    result = runner.invoke(app, [*WEATHER, "--json", "--transcript", str(transcript)])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["final_text"].startswith("Paris is 18 °C") and data["stop_reason"] == "final" and data["steps"] == 3
    assert data["usage"]["completion_tokens"] > 0 and data["error"] is None and data["transcript"] == str(transcript)
    # --json before the task (the flag takes no value unless written --json=events)
    result = runner.invoke(app, ["run", "--json", "examples/weather_task.yaml", "--yes"])
    assert result.exit_code == 0 and json.loads(result.stdout)["stop_reason"] == "final"


def test_json_events_prints_every_event_as_a_line():
    result = runner.invoke(app, [*WEATHER, "--json=events"])
    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types[0] == "run_start" and types[-1] == "run_end" and types.count("tool_call") == 2
    assert "token" in types  # live deltas are included for scripts that stream
    assert "".join(e["text"] for e in events if e["type"] == "token" and e["channel"] == "final").startswith(
        "Paris is 18"
    )


def test_json_reports_a_budget_stop_with_exit_code_1(tmp_path):
    result = runner.invoke(app, [*WEATHER, "--max-steps", "1", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["stop_reason"] == "max_steps" and data["final_text"] is None and "1 steps" in data["error"]


def test_task_from_stdin(tmp_path):
    model = _script(tmp_path, [FINAL.format(text="Read from stdin.")])
    result = runner.invoke(
        app,
        ["run", "-", "-m", model, "-q", "--transcript", str(tmp_path / "t.jsonl")],
        input="a task\nover two lines\n",
    )
    assert result.exit_code == 0 and result.stdout == "Read from stdin.\n"
    start = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])
    assert start["task"] == "a task\nover two lines"
    empty = runner.invoke(app, ["run", "-", "-m", model], input="")
    assert empty.exit_code == 2 and "no task on stdin" in empty.output


@pytest.mark.slow  # CLI runs in subprocesses
def test_no_hard_wrap_when_output_is_not_a_terminal(tmp_path):
    long_answer = " ".join(f"word{i}" for i in range(80))
    model = _script(tmp_path, [FINAL.format(text=long_answer)])
    proc = run_cli(["run", "x", "-m", model], cwd=ROOT, env=cli_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert long_answer in proc.stdout.splitlines()


# -- models, configuration, help ---------------------------------------------------------------------------------------


def test_model_shortcuts_and_the_unknown_spec_error():
    ollama = load_model("gpt-oss:120b")
    assert isinstance(ollama, OpenAICompatibleModel) and ollama.flavor == "ollama"
    assert ollama.base_url == "http://127.0.0.1:11434" and ollama.model_name == "gpt-oss:120b"
    with pytest.raises(ModelError) as info:
        load_model("gpt-oss-20b")
    for form in ("gpt-oss:20b", "20b", "http(s)://", "ollama+http://", "transformers:", "scripted:", "policy:"):
        assert form in str(info.value)


def test_the_gpt_oss_shortcut_reaches_ollama_at_its_default_address(tmp_path):
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 11434)) == 0:
            pytest.skip("something already listens on Ollama's port 11434")
    with FakeOllama([[FINAL.format(text="Hello from Ollama.")]], port=11434) as server:
        result = runner.invoke(app, ["run", "hi", "-m", "gpt-oss:20b", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hello from Ollama.\n" and server.requests[0]["model"] == "gpt-oss:20b"


def test_without_ollama_the_run_says_how_to_start_it_before_any_sandbox_starts(tmp_path):
    """As for an HTTP server: the model's server is checked first; exit 2, one line, and no sandbox was made
    (the bubblewrap sandbox's data folder, watched for in TMPDIR while the command runs, never appears)."""
    from harmony_agent.sandboxes.local import DATA_PREFIX
    from helpers.available import require

    require("bubblewrap")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the run: nothing listens there
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = cli_env(tmp_path, TMPDIR=str(temp), HARMONY_AGENT_SANDBOX="bubblewrap")
    model = f"ollama+http://127.0.0.1:{port}#gpt-oss:20b"
    args = [sys.executable, "-m", "harmony_agent.cli", "run", "hi", "--model", model, "--tools", "python", "--yes"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: set[str] = set()
    while proc.poll() is None:
        seen.update(p.name for p in temp.iterdir() if p.name.startswith(DATA_PREFIX))
        time.sleep(0.02)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, out + err
    assert not seen and not list(temp.glob(DATA_PREFIX + "*"))
    [line] = err.strip().splitlines()
    assert "Is Ollama running? Start it with `ollama serve`" in line and "`ollama pull gpt-oss:20b`" in line
    assert "harmony-agent doctor" in line and f"127.0.0.1:{port}" in line and "Traceback" not in line
    assert out == ""


def test_an_ollama_without_the_model_says_which_to_pull(tmp_path):
    with FakeOllama([[FINAL.format(text="unused")]], models=("llama3:8b",)) as server:
        result = runner.invoke(app, ["run", "hi", "-m", f"ollama+http://127.0.0.1:{server.port}#gpt-oss:20b"])
        assert server.requests == []  # refused before the first step
    assert result.exit_code == 2
    assert "has no model 'gpt-oss:20b'" in result.stderr and "`ollama pull gpt-oss:20b`" in result.stderr


def test_config_file_sets_defaults_and_flags_override_it(tmp_path, monkeypatch):
    model = _script(tmp_path, [FINAL.format(text="From the config's model.")])
    config = tmp_path / "my.toml"
    config.write_text(
        f'model = "{model}"\ntools = ["examples.weather:get_weather"]\nreasoning = "high"\napprove = "always"\n'
    )
    monkeypatch.setenv("HARMONY_AGENT_CONFIG", str(config))
    result = runner.invoke(app, ["run", "x", "--transcript", str(tmp_path / "t.jsonl")])
    assert result.exit_code == 0, result.output
    start = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])
    assert (
        start["reasoning"] == "high" and start["tools"] == ["functions.get_weather"] and "script.json" in start["model"]
    )
    result = runner.invoke(app, ["run", "x", "-r", "low", "-m", _script(tmp_path, [FINAL.format(text="ok")]), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["final_text"] == "ok"


def test_the_default_config_file_is_read_from_the_config_folder(tmp_path):
    folder = tmp_path / "config" / "harmony-agent"
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text('max_steps = 1\napprove = "always"\n')
    result = runner.invoke(app, [*WEATHER[:2], "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["stop_reason"] == "max_steps"


@pytest.mark.parametrize(
    "content,message",
    [
        ('modle = "20b"\n', "modle"),
        ("max_steps = 0\n", "max_steps"),
        ('reasoning = "extreme"\n', "reasoning"),
        ("model = \n", "not valid TOML"),
    ],
)
def test_a_bad_config_file_is_a_one_line_error(tmp_path, monkeypatch, content, message):
    config = tmp_path / "bad.toml"
    config.write_text(content)
    monkeypatch.setenv("HARMONY_AGENT_CONFIG", str(config))
    result = runner.invoke(app, WEATHER)
    assert result.exit_code == 2 and message in result.output and str(config) in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow  # CLI runs in subprocesses
def test_version_help_and_completion():
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.startswith("harmony-agent ")
    help_text = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).stdout
    for shown in (
        "low|medium|high",
        "default: medium",
        "default: 20",
        "8192, 16384 or 32768",
        "python, browser, computer",
        "--json",
        "[=events]",
        "--quiet",
        "--verbose",
        "130 interrupted",
        "gpt-oss:20b",
    ):
        assert shown in help_text, shown
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout
    assert "--install-completion" in top and "--show-completion" in top
    completion = run_cli(["--show-completion", "bash"], cwd=ROOT, timeout=60)
    assert completion.returncode == 0 and "complete" in completion.stdout


# -- bad input ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--transcript", "{tmp}"], "is a directory"),
        (["--transcript", "/proc/version/run.jsonl"], "cannot write transcript"),
        (["--max-steps", "0"], "--max-steps must be a whole number of at least 1, got 0"),
        (["--max-tokens", "0"], "--max-tokens must be a whole number of at least 1, got 0"),
        (["--search", "local:/no/such/folder", "-t", "browser"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, extra, message):
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    result = runner.invoke(app, [*WEATHER, *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_a_task_file_path_that_is_a_directory(tmp_path):
    """A folder is a batch of task files (see batch); one without any is bad input, said in one line."""
    folder = tmp_path / "tasks.yaml"
    folder.mkdir()
    for path in (folder, tmp_path):
        result = runner.invoke(app, ["run", str(path)], env={"COLUMNS": "400"})
        assert result.exit_code == 2, result.output
        assert any(m in result.output for m in ("is a folder", "is a directory", "holds no .yaml task files")), (
            result.output
        )
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_error_text_with_brackets_prints_as_it_is(tmp_path):
    result = runner.invoke(app, ["run", "[red]odd[/red] [bold].yaml"])
    assert result.exit_code == 2
    assert "task file [red]odd[/red] [bold].yaml not found" in result.output
