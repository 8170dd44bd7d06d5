"""A stand-in for gpt-oss that drives the Greeter app from the screen's text alone.

It observes (launching the app first if no Greeter window is open), finds
the name field by its OCR'd prompt, clicks it, types a name with non-ASCII
letters, clicks "Say hello" by its text, observes again and answers with the
greeting it read. Swap ``--model`` for a real gpt-oss.
"""

from __future__ import annotations

import json
import re

from openai_harmony import Message, Role

NAME = "Zoë Ørsted"


def _call(name: str, arguments: dict) -> str:
    return f"<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>{json.dumps(arguments, ensure_ascii=False)}<|call|>"


def policy(messages: list[Message]) -> str:
    done = [m.author.name for m in messages if m.author.role == Role.TOOL]
    last = messages[-1].content[0].text if done else ""
    if not done:
        return "<|channel|>analysis<|message|>First I look at the screen.<|end|><|start|>assistant" + _call(
            "observe", {}
        )
    step = done[-1]
    if step == "functions.launch":
        return _call("wait", {"seconds": 1.5})
    if step == "functions.wait":
        return _call("observe", {})
    if step == "functions.observe" and "functions.type_text" not in done:
        field = re.search(r'"(type your name[^"]*)" at \((\d+), (\d+)\)', last)
        if field:
            return _call("click", {"x": int(field.group(2)), "y": int(field.group(3))})
        if '"Greeter"' not in last and "functions.launch" not in done:
            return _call("launch", {"app": "greeter"})
        return "<|channel|>final<|message|>I cannot find the name field on the screen.<|return|>"
    if step == "functions.click" and "functions.type_text" not in done:
        return _call("type_text", {"text": NAME})
    if step == "functions.type_text":
        return _call("click", {"text": "Say hello"})
    if step == "functions.click":
        return _call("observe", {})
    greeting = re.search(r'"(Hello[^"]*)"', last)
    if not greeting:
        return "<|channel|>final<|message|>I clicked the button, but no greeting appeared.<|return|>"
    return f"<|channel|>final<|message|>The app now says: {greeting.group(1)}<|return|>"
