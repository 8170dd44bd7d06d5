"""Stand-ins for gpt-oss that drive real third-party Debian apps from ``observe`` alone.

- ``calculator``: galculator (GTK, with an accessibility tree): clicks the
  buttons of 12*(3+4) by their exact names, presses "=", reads the display.
- ``editor``: mousepad (GTK text editor): clicks its text area, types
  Unicode text, saves with Ctrl+S, and checks the title lost its "*".
- ``xcalc``: xcalc (Athena widgets, no accessibility tree): finds the
  digit buttons by OCR, multiplies 12 by 7 and reads the display by OCR.

Each reads only the text ``observe`` returns; tests check the app's real
state (the display's value, the saved file's bytes). Swap ``--model`` for a
real gpt-oss:

    harmony-agent run "Compute 12*(3+4) in the calculator" --tools computer --app calculator=galculator \\
        --model policy:examples.desktop.app_policies:calculator --yes
"""

from __future__ import annotations

import json
import re

from openai_harmony import Message, Role

EXPRESSION = ["1", "2", "*", "(", "3", "+", "4", ")", "="]
TEXT = "Grüße, Zoë Ørsted — 1 × 2 ≠ 3\nŁódź, Ñandú\n"


def _call(name: str, arguments: dict) -> str:
    return f"<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>{json.dumps(arguments, ensure_ascii=False)}<|call|>"


def _final(text: str) -> str:
    return f"<|channel|>final<|message|>{text}<|return|>"


def _progress(messages: list[Message]) -> tuple[list[str], list[str]]:
    """The tool steps so far (recipients) and their outputs."""
    tools = [m for m in messages if m.author.role == Role.TOOL]
    return [m.author.name or "" for m in tools], [m.content[0].text for m in tools]


def _start(messages: list[Message], app: str) -> tuple[list[str], list[str], str | None]:
    """The steps so far, their outputs, and the next opening step (launch, wait, observe) if still opening."""
    done, outputs = _progress(messages)
    return done, outputs, _opening(done, app)


def _opening(done: list[str], app: str) -> str | None:
    """Launch the app, wait for it, observe: the first three steps of every policy here."""
    if not done:
        return _call("launch", {"app": app})
    if done[-1] == "functions.launch":
        return _call("wait", {"seconds": 2})
    if done[-1] == "functions.wait" and done.count("functions.observe") == 0:
        return _call("observe", {})
    return None


def calculator(messages: list[Message]) -> str:
    done, outputs, opening = _start(messages, "calculator")
    if opening:
        return opening
    clicks = done.count("functions.click")
    if clicks < len(EXPRESSION):
        if clicks == 0 and done[-1] == "functions.wait":
            return _call("observe", {})
        if "toggle button" not in outputs[-1] and clicks == 0 and done[-1] == "functions.observe":
            return (
                _call("wait", {"seconds": 1})
                if done.count("functions.wait") < 10
                else _final("The calculator never showed.")
            )
        return _call("click", {"text": EXPRESSION[clicks]})
    if done[-1] == "functions.click":
        return _call("observe", {})
    shown = re.search(r'^\s*- text = "([^"]*)"', outputs[-1], flags=re.M)
    return _final(f"12*(3+4) = {shown.group(1).strip()}" if shown else "I cannot read the calculator's display.")


def editor(messages: list[Message]) -> str:
    done, outputs, opening = _start(messages, "editor")
    if opening:
        return opening
    if "functions.type_text" not in done:
        if done[-1] == "functions.observe":
            area = re.search(
                r"^\s*- text(?: = \"[^\"]*\")?(?: \[focused\])? at \((\d+), (\d+)\)", outputs[-1], flags=re.M
            )
            if not area:
                return (
                    _call("wait", {"seconds": 1})
                    if done.count("functions.wait") < 10
                    else _final("No text area found.")
                )
            return _call("click", {"x": int(area.group(1)), "y": int(area.group(2))})
        if done[-1] == "functions.wait":
            return _call("observe", {})
        return _call("type_text", {"text": TEXT})
    if done[-1] == "functions.type_text":
        return _call("key", {"keys": "ctrl+s"})
    if done[-1] == "functions.key":
        return _call("wait", {"seconds": 1})
    if done[-1] == "functions.wait":
        return _call("observe", {})
    title = re.search(r'^- "([^"]*Mousepad)" at .*\[focused\]', outputs[-1], flags=re.M)
    if title and not title.group(1).startswith("*"):
        return _final(f"Saved: {title.group(1)}")
    return _final("The document still has unsaved changes.")


def xcalc(messages: list[Message]) -> str:
    done, outputs, opening = _start(messages, "xcalc")
    if opening:
        return opening
    clicks = done.count("functions.click")
    if clicks == 0 and done[-1] == "functions.observe" and '"Calculator"' not in outputs[-1]:
        return _call("wait", {"seconds": 1}) if done.count("functions.wait") < 10 else _final("xcalc never showed.")
    if clicks == 0 and done[-1] == "functions.wait":
        return _call("observe", {})
    if clicks < 2:  # the digits 1 and 2, found by OCR
        return _call("click", {"text": "12"[clicks]})
    if "functions.key" not in done:
        return _call("key", {"keys": "*"})
    if "functions.type_text" not in done:
        return _call("type_text", {"text": "7="})
    if done[-1] == "functions.type_text":
        return _call("observe", {})
    # The display is the topmost line of the window's text.
    numbers = re.findall(r'^- "(-?\d+(?:\.\d+)?)" at \((\d+), (\d+)\)', outputs[-1], flags=re.M)
    if not numbers:
        return _final("I cannot read the display.")
    value = min(numbers, key=lambda n: int(n[2]))[0]
    return _final(f"12*7 = {value}")
