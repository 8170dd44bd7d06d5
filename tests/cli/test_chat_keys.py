"""``chat`` at a real terminal: Ctrl-C clears a half-typed line or cancels a turn, and the conversation goes on.

Keys go through the kernel's line discipline (Ctrl-C is SIGINT), as from a
keyboard. Only Ctrl-D (or /quit) leaves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.cli_support import PtySession, cli_env

CALL = "<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>{args}<|call|>"
FINAL = "<|channel|>final<|message|>{text}<|return|>"

TOOLS = '''
import time


def slow_add(a: int, b: int) -> int:
    """Add two numbers, slowly. Takes a while on purpose.

    Args:
        a: First number.
        b: Second number.
    """
    time.sleep(8)
    return a + b
'''


def _chat(tmp_path: Path, completions: list[str], *extra: str) -> PtySession:
    (tmp_path / "chattools.py").write_text(TOOLS)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"completions": completions}))
    args = ["chat", "-m", f"scripted:{script}", "-t", "chattools:slow_add", "--yes"]
    return PtySession([*args, "--transcript", str(tmp_path / "chat.jsonl"), *extra], tmp_path, cli_env(tmp_path))


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow  # a chat on a pty with a running tool
def test_ctrl_c_clears_a_half_typed_line_and_cancels_a_running_tool_without_leaving(tmp_path):
    session = _chat(
        tmp_path,
        [
            FINAL.format(text="First answer."),
            CALL.format(name="slow_add", args='{"a": 2, "b": 3}'),
            FINAL.format(text="Third answer."),
        ],
    )
    try:
        session.expect_prompt(r"you> ")
        session.send("first question\r")
        session.expect(r"First answer\.")
        session.expect_prompt(r"you> ")
        session.send("half a thought")
        session.expect_prompt(r"half a thought")  # echoed, and read: a person sees it before pressing Ctrl-C
        session.send("\x03")  # Ctrl-C on a half-typed line: cleared, a fresh prompt
        session.expect_prompt(r"you> ")
        session.send("add them\r")
        session.expect(r"running…", timeout=30)  # the slow tool is running
        session.send("\x03")
        session.expect(r"turn cancelled")
        session.expect_prompt(r"you> ")
        session.send("third question\r")  # may wait for the cancelled tool's thread (it cannot be stopped)
        session.expect(r"Third answer\.", timeout=60)
        session.expect_prompt(r"you> ")
        session.send("\x04")
        assert session.wait(timeout=30) == 0
    finally:
        session.close()
    assert "Traceback" not in session.text
    events = _events(tmp_path / "chat.jsonl")
    tasks = [e["task"] for e in events if e["type"] == "run_start"]
    assert tasks == ["first question", "add them", "third question"]  # the cleared line never ran
    prompts = [e["prompt_tokens"] for e in events if e["type"] == "generation"]
    # The third turn continues the first (the cancelled turn left no half of itself in the conversation).
    assert prompts[-1] > prompts[0]


def test_tools_are_listed_for_people(tmp_path):
    session = _chat(tmp_path, [FINAL.format(text="unused")], "-t", "python", "--sandbox", "unsandboxed")
    try:
        session.expect_prompt(r"you> ")
        session.send("/tools\r")
        session.expect(r"functions\.slow_add Add two numbers, slowly")
        session.expect_prompt(r"you> ")
        session.send("\x04")
        assert session.wait(timeout=30) == 0
    finally:
        session.close()
    assert "python runs Python code in a sandbox" in session.text
    assert "chain of thought" not in session.text  # the model's own description is not shown to people
    assert "Takes a while on purpose" not in session.text  # one sentence per tool
