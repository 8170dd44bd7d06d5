"""A stand-in for gpt-oss that does a small web research task with the browser, citing what it read.

It reads only the conversation, as the model would: it searches, opens the
top result, finds the line it needs, and answers with a harmony citation
``【cursor†Lline】`` to the view it read. Swap ``--model`` for a real gpt-oss
to run the same task for real.
"""

from __future__ import annotations

import json
import re

from openai_harmony import Message, Role

QUESTION_WORD = "Wednesday"


def _call(recipient: str, arguments: dict) -> str:
    return f"<|channel|>analysis to={recipient} <|constrain|>json<|message|>{json.dumps(arguments)}<|call|>"


def policy(messages: list[Message]) -> str:
    tools_used = [m.author.name for m in messages if m.author.role == Role.TOOL]
    if not tools_used:
        return (
            "<|channel|>analysis<|message|>I will search the library site for its opening hours.<|end|>"
            "<|start|>assistant" + _call("browser.search", {"query": "library opening hours", "topn": 3})
        )
    view = messages[-1].content[0].text
    last = tools_used[-1]
    if last == "browser.search":
        match = re.search(r"【(\d+)†Opening hours", view)
        if not match:
            return "<|channel|>final<|message|>The search found no opening-hours page.<|return|>"
        return _call("browser.open", {"id": int(match.group(1))})
    if last == "browser.open" and "browser.find" not in tools_used:
        return _call("browser.find", {"pattern": QUESTION_WORD})
    if last == "browser.find":
        match = re.search(r"【(\d+)†match at L(\d+)】", view)
        if not match:
            return f"<|channel|>final<|message|>The page does not mention {QUESTION_WORD}.<|return|>"
        return _call("browser.open", {"id": int(match.group(1))})
    # A view opened at the match: read the line and cite it.
    cursor = re.match(r"\[(\d+)\]", view)
    line = re.search(rf"^L(\d+): ({QUESTION_WORD} .*)$", view, re.MULTILINE)
    if not cursor or not line:
        return "<|channel|>final<|message|>I could not read the opening hours.<|return|>"
    day, opens, closes = (part.strip() for part in line.group(2).split("|"))
    return (
        f"<|channel|>final<|message|>On {day} the library opens at {opens} and closes at {closes} "
        f"【{cursor.group(1)}†L{line.group(1)}】.<|return|>"
    )
