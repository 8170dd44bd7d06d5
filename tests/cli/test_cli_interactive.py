"""The CLI at a real terminal (a pseudo-terminal): approval prompts, Ctrl-C, Ctrl-D, chat commands, the spinner.

Keys go through the kernel's terminal line discipline, as from a keyboard:
Ctrl-C (\\x03) becomes SIGINT for the CLI, Ctrl-D (\\x04) an end of input.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.available import require
from helpers.cli_support import PtySession, cli_env, run_cli

CALL = "<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>{args}<|call|>"
FINAL = "<|channel|>final<|message|>{text}<|return|>"

TOOLS = '''
import time

def get_weather(city: str) -> dict:
    """Current temperature in a city (test data).

    Args:
        city: City name.
    """
    return {"city": city, "temperature": {"paris": 18, "oslo": 4}.get(city.lower(), 10)}

def slow_add(a: int, b: int) -> int:
    """Add two numbers, slowly.

    Args:
        a: First number.
        b: Second number.
    """
    time.sleep(2.5)
    return a + b
'''


def _script(tmp_path: Path, completions: list[str]) -> str:
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"completions": completions}))
    return f"scripted:{path}"


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "clitools.py").write_text(TOOLS)
    return tmp_path


def _weather_run(workdir: Path, calls: int = 2) -> list[str]:
    model = _script(
        workdir,
        [CALL.format(name="get_weather", args=json.dumps({"city": c})) for c in ["Paris", "Oslo", "Lima"][:calls]]
        + [FINAL.format(text="Done with the weather.")],
    )
    return [
        "run",
        "What is the weather?",
        "-m",
        model,
        "-t",
        "clitools:get_weather",
        "--transcript",
        str(workdir / "t.jsonl"),
    ]


def test_approval_yes_no_with_reason_and_the_default_is_no(workdir):
    session = PtySession(_weather_run(workdir, calls=3), workdir, cli_env(workdir))
    try:
        session.expect(r"allow\?.*\[y\]es / \[N\]o / \[a\]lways for functions\.get_weather")
        session.send("y\r")
        session.expect(r"← functions\.get_weather \(\d+ ms\) .*Paris")
        session.expect(r"allow\?")
        session.send("n\r")
        session.expect(r"reason for the model")
        session.send("Oslo is private\r")
        session.expect(r"← functions\.get_weather \(refused\)")
        session.expect(r"allow\?")
        session.send("\r")  # the default: no
        session.expect(r"reason for the model")
        session.send("\r")
        session.expect(r"Done with the weather\.")
        assert session.wait() == 0
    finally:
        session.close()
    results = [e for e in _events(workdir / "t.jsonl") if e["type"] == "tool_result"]
    assert [r["refused"] for r in results] == [False, True, True]
    assert "the user declined this call: Oslo is private" in results[1]["content"]
    assert results[2]["content"].endswith("the user declined this call")


def test_always_allows_the_tool_for_the_rest_of_the_session(workdir):
    session = PtySession(_weather_run(workdir, calls=3), workdir, cli_env(workdir))
    try:
        session.expect(r"allow\?")
        session.send("a\r")
        session.expect(r"Done with the weather\.")
        assert session.wait() == 0
    finally:
        session.close()
    assert session.text.count("allow?") == 1
    assert [e["refused"] for e in _events(workdir / "t.jsonl") if e["type"] == "tool_result"] == [False, False, False]


def test_ctrl_d_at_the_approval_prompt_refuses_with_a_reason(workdir):
    session = PtySession(_weather_run(workdir, calls=1), workdir, cli_env(workdir))
    try:
        session.expect(r"allow\?")
        session.send("\x04")
        session.expect(r"refused.*end of input")
        session.expect(r"Done with the weather\.")
        assert session.wait() == 0
    finally:
        session.close()
    result = next(e for e in _events(workdir / "t.jsonl") if e["type"] == "tool_result")
    assert result["refused"] and "Ctrl-D" in result["content"]


def _interrupt(
    session: PtySession,
    when: str,
    *,
    within: float = 10,
    before: Callable[[], None] | None = None,
    at_prompt: bool = False,
) -> None:
    """Press Ctrl-C once ``when`` shows: the CLI must exit 130 within ``within`` seconds. Closes the session."""
    try:
        if at_prompt:  # Ctrl-C once the CLI waits for the keyboard (see expect_prompt)
            session.expect_prompt(when)
        else:
            session.expect(when)
        if before is not None:
            before()
        pressed = time.monotonic()
        session.send("\x03")
        assert session.wait(timeout=max(30, 4 * within)) == 130
        assert time.monotonic() - pressed < within
    finally:
        session.close()


def test_ctrl_c_at_the_approval_prompt_exits_130_at_once(workdir):
    session = PtySession(_weather_run(workdir, calls=1), workdir, cli_env(workdir))
    _interrupt(session, r"allow\?", at_prompt=True)
    assert "interrupted" in session.text and "Traceback" not in session.text
    events = [e["type"] for e in _events(workdir / "t.jsonl")]
    assert "final" not in events and "tool_result" not in events


def test_duration_excludes_the_time_at_the_approval_prompt(workdir):
    session = PtySession(_weather_run(workdir, calls=1), workdir, cli_env(workdir))
    try:
        session.expect(r"allow\?")
        time.sleep(2.0)  # a person thinking it over
        session.send("y\r")
        shown = session.expect(r"← functions\.get_weather \((\d+) ms\)")
        assert session.wait() == 0
    finally:
        session.close()
    assert int(shown.group(1)) < 1000
    result = next(e for e in _events(workdir / "t.jsonl") if e["type"] == "tool_result")
    assert result["duration_s"] < 1.0


def test_a_slow_tool_shows_a_spinner_with_elapsed_time(workdir):
    model = _script(workdir, [CALL.format(name="slow_add", args='{"a": 2, "b": 3}'), FINAL.format(text="It is 5.")])
    session = PtySession(
        ["run", "Add 2 and 3", "-m", model, "-t", "clitools:slow_add", "--yes"], workdir, cli_env(workdir)
    )
    try:
        session.expect(r"functions\.slow_add running… [12] s")
        session.expect(r"← functions\.slow_add \(2\.\d s\) 5")
        session.expect(r"It is 5\.")
        assert session.wait() == 0
    finally:
        session.close()


SLOW_MODEL = """
import asyncio

async def slow(messages):
    await asyncio.sleep(3.5)  # as a CPU reads a long first prompt before its first token
    return "<|channel|>final<|message|>Read it all.<|return|>"
"""


def test_a_model_slow_to_its_first_token_shows_a_status_line_until_it_writes(workdir):
    (workdir / "slowmodel.py").write_text(SLOW_MODEL)
    args = ["run", "Say something", "-m", "policy:slowmodel:slow", "--yes"]
    session = PtySession([*args, "--transcript", str(workdir / "t.jsonl")], workdir, cli_env(workdir))
    try:
        shown = session.expect(r"reading the prompt \(([\d,]+) tokens\)… [23] s")
        session.expect(r"Read it all\.")
        assert session.wait() == 0
    finally:
        session.close()
    [generation] = [e for e in _events(workdir / "t.jsonl") if e["type"] == "generation"]
    assert int(shown.group(1).replace(",", "")) == generation["prompt_tokens"] > 0
    # Gone when the first token came: the line was erased (Rich's transient status) before the answer was written.
    raw = session.raw.decode("utf-8", "replace")
    status_at = raw.rfind("reading the prompt")
    answer_at = raw.find("Read", status_at)  # the answer's first token (each is styled on its own)
    assert 0 < status_at < answer_at and "\x1b[1A\x1b[2K" in raw[status_at:answer_at]  # up a line, erase it
    assert "reading the prompt" not in raw[answer_at:]
    # Piped, or for scripts: no status line anywhere.
    for extra in ([], ["--quiet"], ["--json"]):
        done = run_cli([*args, *extra], cwd=workdir, env=cli_env(workdir), timeout=60)
        assert done.returncode == 0, done.stderr
        assert "Read it all." in done.stdout and "reading the prompt" not in done.stdout + done.stderr


def test_chat_commands_line_editing_history_and_ctrl_c(workdir):
    model = _script(
        workdir,
        [FINAL.format(text="First answer."), FINAL.format(text="Second answer."), FINAL.format(text="Third answer.")],
    )
    saved = workdir / "saved.jsonl"
    session = PtySession(
        ["chat", "-m", model, "-t", "clitools:get_weather", "--transcript", str(workdir / "chat.jsonl")],
        workdir,
        cli_env(workdir),
    )
    try:
        session.expect(r"you> ")
        session.send("/help\r")
        session.expect(r"/reset .*\n.*/save FILE")
        session.expect(r"you> ")
        session.send("/tools\r")
        session.expect(r"functions\.get_weather Current temperature in a city")
        session.expect(r"you> ")
        session.send("ab\x1b[Dc\r")  # type "ab", cursor left, insert "c": the line is "acb"
        session.expect(r"First answer\.")
        session.expect(r"you> ")
        session.send("\x1b[A\r")  # up arrow: the previous line again
        session.expect(r"Second answer\.")
        session.expect(r"you> ")
        session.send("/reset\r")
        session.expect(r"starts over")
        session.send(f"/save {saved}\r")
        session.expect(r"saved \d+ events")
        session.send("/nonsense\r")
        session.expect(r"unknown command /nonsense")
        session.expect(r"you> ")
        session.send("\x04")
        assert session.wait(timeout=30) == 0
    finally:
        session.close()
    starts = [e for e in _events(workdir / "chat.jsonl") if e["type"] == "run_start"]
    assert [s["task"] for s in starts] == ["acb", "acb"]
    assert [e["type"] for e in _events(saved)].count("final") == 2
    assert (workdir / "state" / "harmony-agent" / "chat_history").read_text().count("acb") >= 1


def test_chat_reset_starts_the_conversation_over(workdir):
    model = _script(workdir, [FINAL.format(text="One."), FINAL.format(text="Two."), FINAL.format(text="Three.")])
    session = PtySession(["chat", "-m", model, "--transcript", str(workdir / "chat.jsonl")], workdir, cli_env(workdir))
    try:
        for line, answer in (("first", "One."), ("second", "Two."), ("/reset", "starts over"), ("third", "Three.")):
            session.expect(r"you> ")
            session.send(line + "\r")
            session.expect(answer)
        session.expect(r"you> ")
        session.send("\x04")
        assert session.wait() == 0
    finally:
        session.close()
    prompts = [e["prompt_tokens"] for e in _events(workdir / "chat.jsonl") if e["type"] == "generation"]
    assert prompts[1] > prompts[0]  # the second turn continues the first
    assert prompts[2] < prompts[1] and abs(prompts[2] - prompts[0]) <= 3  # after /reset: a fresh conversation


def test_ctrl_c_while_a_tool_runs_exits_130(workdir):
    model = _script(workdir, [CALL.format(name="slow_add", args='{"a": 2, "b": 3}'), FINAL.format(text="It is 5.")])
    session = PtySession(
        ["run", "Add 2 and 3", "-m", model, "-t", "clitools:slow_add", "--yes"], workdir, cli_env(workdir)
    )
    _interrupt(session, r"running…")
    assert "interrupted" in session.text and "It is 5." not in session.text and "Traceback" not in session.text


def _containers_of(pid: int) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.ID}} {{.Labels}}"], capture_output=True, text=True, timeout=30
    ).stdout
    return [line.split()[0] for line in out.splitlines() if f":{pid}:" in line and "org.harmony-agent.owner=" in line]


def test_ctrl_c_during_python_in_docker_exits_130_and_removes_the_container(workdir):
    require("docker")
    model = _script(
        workdir,
        [
            "<|channel|>analysis to=python code<|message|>import time\ntime.sleep(60)<|call|>",
            FINAL.format(text="slept"),
        ],
    )
    session = PtySession(
        ["run", "Sleep", "-m", model, "-t", "python", "--sandbox", "docker", "--yes"], workdir, cli_env(workdir)
    )

    def one_container() -> None:
        assert len(_containers_of(session.proc.pid)) == 1

    _interrupt(session, r"python running…", within=15, before=one_container)
    assert "interrupted" in session.text and "slept" not in session.text and "Traceback" not in session.text
    assert _containers_of(session.proc.pid) == []
