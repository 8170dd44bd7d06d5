"""A whole conversation sent back by a stateless client, as harmony messages.

Clients built on the Responses API (openai-agents, LangChain, Codex) and on
Chat Completions keep the conversation themselves and send all of it with
each request: the user's messages, the assistant's answers and reasoning,
the function calls and their outputs, and this server's own tool items. This
module reads those items into :class:`Entry` values (one shape for both APIs),
splits off the new input at the end (user text, function outputs), and
renders the rest into a :class:`History`, as the gpt-oss reference and
vLLM's Responses server do, so the model sees the conversation it would have
seen had the server kept it.

Each entry also has a *key*: what identifies it when the client sends it
back. A held conversation remembers the keys of everything it has said and
heard; a request whose history has exactly those keys continues in that
conversation's session (its python variables and the model's KV cache
kept) instead of starting over from the rebuilt history.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from openai_harmony import Message, Role

from harmony_agent import events as ev
from harmony_agent.history import History
from harmony_agent.results import PendingCall, RunResult
from harmony_agent.server.protocol import RequestError
from harmony_agent.tools.base import ToolCall, ToolResult, result_message

#: Entry kinds the model wrote; everything after the last of them is the request's new input.
MODEL_KINDS = ("assistant", "reasoning", "call", "result")


@dataclass(frozen=True)
class Entry:
    """One turn of a conversation as a client sends it back.

    ``kind`` is ``user``, ``assistant`` (``channel`` final or commentary),
    ``reasoning``, ``call`` (a call the model made: ``recipient`` is
    ``functions.NAME`` for the client's functions, ``python`` or
    ``browser.NAME`` for this server's tools), ``output`` (the client's answer
    to a function call) or ``result`` (a server tool's result, carried in its
    own item).
    """

    kind: str
    text: str = ""
    channel: str | None = None
    recipient: str | None = None
    call_id: str | None = None

    def key(self) -> tuple[str, ...] | None:
        """What identifies this entry when it comes back; None for what clients may drop or rewrite (reasoning)."""
        if self.kind == "reasoning" or (self.kind == "assistant" and not self.text.strip()):
            return None
        if self.kind in ("call", "result"):
            return (self.kind, self.call_id or "", self.text if self.kind == "call" else "")
        if self.kind == "output":
            return ("output", self.call_id or "", self.text)
        return (self.kind, self.text.strip())


def keys(entries: Sequence[Entry]) -> list[tuple[str, ...]]:
    return [key for entry in entries if (key := entry.key()) is not None]


@dataclass
class ClientConversation:
    """A request's conversation: instructions, the history before the new input, and the new input."""

    instructions: list[str] = field(default_factory=list)
    history: list[Entry] = field(default_factory=list)
    task: str | None = None
    #: The client's function outputs, by the call ids it saw.
    outputs: dict[str, str] = field(default_factory=dict)
    #: The new input as entries (for the conversation's keys).
    new: list[Entry] = field(default_factory=list)

    def pending_calls(self) -> list[PendingCall]:
        """The history's function calls still waiting for an output: the new input must answer each."""
        answered = {e.call_id for e in self.history if e.kind in ("output", "result")}
        return [
            PendingCall(e.call_id or "", e.recipient or "", e.channel, e.text)
            for e in self.history
            if e.kind == "call" and (e.recipient or "").startswith("functions.") and e.call_id not in answered
        ]


def split(instructions: list[str], entries: list[Entry]) -> ClientConversation:
    """Split ``entries`` into the history and the new input (what follows the model's last entry), and check it."""
    last_model = max((i for i, e in enumerate(entries) if e.kind in MODEL_KINDS), default=-1)
    history, new = entries[: last_model + 1], entries[last_model + 1 :]
    if not new:
        raise RequestError(
            "the input ends with the assistant's own items: add a user message or function_call_output items"
        )
    calls = {e.call_id: e for e in history if e.kind == "call"}
    for entry in history:
        if entry.kind == "output" and entry.call_id not in calls:
            raise RequestError(f"a function output for {entry.call_id!r} answers no call in the input")
    conversation = ClientConversation(instructions, history, new=new)
    texts = [e.text for e in new if e.kind == "user"]
    conversation.task = "\n\n".join(texts) or None
    conversation.outputs = {e.call_id or "": e.text for e in new if e.kind == "output"}
    waiting = {c.call_id for c in conversation.pending_calls()}
    unknown = [c for c in conversation.outputs if c not in waiting]
    missing = [c for c in waiting if c not in conversation.outputs]
    if unknown:
        raise RequestError(
            f"function outputs (function_call_output items, tool messages) for {unknown} answer no unanswered "
            "call in the input (send the whole conversation, or continue with previous_response_id)"
        )
    if missing:
        raise RequestError(
            f"the input's function calls {missing} need their outputs (function_call_output items, tool messages)"
        )
    return conversation


def render(preamble: Sequence[Message], entries: Sequence[Entry]) -> History:
    """The history the model would have, had the server kept it: ``entries`` as harmony messages after ``preamble``.

    A turn that ended with a final answer is marked finished, so its
    analysis is dropped at the next user message, as harmony's renderer does.
    """
    history = History(preamble)
    calls: dict[str | None, Entry] = {}
    for entry in entries:
        if entry.kind == "user":
            history.add_user(entry.text)
        elif entry.kind in ("assistant", "reasoning"):
            channel = "analysis" if entry.kind == "reasoning" else entry.channel or "final"
            message = Message.from_role_and_content(Role.ASSISTANT, entry.text).with_channel(channel)
            history.add_tool_messages([message])
            if channel == "final":
                history.finish_turn()
        elif entry.kind == "call":
            calls[entry.call_id] = entry
            message = Message.from_role_and_content(Role.ASSISTANT, entry.text).with_channel(entry.channel or "")
            message = message.with_recipient(entry.recipient or "")
            if (entry.recipient or "").startswith("functions."):
                message = message.with_content_type("<|constrain|>json")
            history.add_tool_messages([message])
        else:
            call = calls[entry.call_id]
            tool_call = ToolCall(call.recipient or "", call.channel, call.text)
            history.add_tool_messages([result_message(tool_call, ToolResult(output=entry.text))])
    return history


def rebuilt_result(history: History, pending: list[PendingCall]) -> RunResult:
    """A result to continue from, for a conversation the server did not keep: its history, and the calls it awaits."""
    stop = "tool_call" if pending else "final"
    return RunResult(None, stop, 0, ev.Usage(), history.messages, [], None, list(pending), _history=history)


# -- Responses API items --------------------------------------------------------


def responses_entries(items: Sequence[Any]) -> tuple[list[str], list[Entry]]:
    """The instructions (system and developer messages) and the entries of a Responses API ``input`` list."""
    instructions: list[str] = []
    entries: list[Entry] = []
    for item in items:
        if not isinstance(item, dict):
            raise RequestError("each input item must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role", "user")
            text = content_text(item.get("content"))
            if role in ("system", "developer"):
                instructions.append(text)
            elif role == "user":
                entries.append(Entry("user", text))
            elif role == "assistant":
                channel = "commentary" if item.get("phase") == "commentary" else "final"
                entries.append(Entry("assistant", text, channel))
            else:
                raise RequestError(f"a message's role must be user, assistant, system or developer, not {role!r}")
        elif kind == "reasoning":
            if text := _reasoning_text(item):
                entries.append(Entry("reasoning", text))
        elif kind == "function_call":
            name, call_id, arguments = item.get("name"), item.get("call_id"), item.get("arguments", "")
            if not isinstance(name, str) or not isinstance(call_id, str) or not isinstance(arguments, str):
                raise RequestError("a function_call item needs name, call_id and arguments (strings)")
            entries.append(Entry("call", arguments, "commentary", f"functions.{name}", call_id))
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str):
                raise RequestError("a function_call_output item needs its call_id")
            entries.append(Entry("output", output_text(item.get("output")), call_id=call_id))
        elif kind in ("code_interpreter_call", "web_search_call", "tool_call"):
            entries += _server_tool_entries(kind, item)
        else:
            raise RequestError(
                f"input items of type {kind!r} are not supported: send message, reasoning, function_call, "
                "function_call_output, code_interpreter_call, web_search_call or tool_call items"
            )
    return instructions, entries


def _reasoning_text(item: dict[str, Any]) -> str:
    """A reasoning item's text: its reasoning_text content, else its summary (encrypted content is not ours to read)."""
    for field_name in ("content", "summary"):
        parts = item.get(field_name)
        if isinstance(parts, list):
            text = "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
            if text:
                return text
    return ""


def _server_tool_entries(kind: str, item: dict[str, Any]) -> list[Entry]:
    """A code_interpreter_call, web_search_call or tool_call this server made: the call and its result."""
    item_id = item.get("id")
    if not isinstance(item_id, str):
        raise RequestError(f"a {kind} item needs its id")
    if kind == "tool_call":  # another of this server's tools (the computer): its recipient, arguments and output
        name, arguments, output = item.get("name"), item.get("arguments"), item.get("output")
        if not isinstance(name, str) or not name:
            raise RequestError("a tool_call item needs its name")
        call = Entry("call", arguments if isinstance(arguments, str) else "", "commentary", name, item_id)
        return [call, Entry("result", output if isinstance(output, str) else "", call_id=item_id)]
    if kind == "code_interpreter_call":
        code = item.get("code")
        outputs = item.get("outputs") or []
        logs = "".join(str(o.get("logs", "")) for o in outputs if isinstance(o, dict))
        call = Entry("call", code if isinstance(code, str) else "", "analysis", "python", item_id)
        return [call, Entry("result", logs, call_id=item_id)]
    action = item.get("action")
    if not isinstance(action, dict):
        action = {}
    kind_of = action.get("type")
    if kind_of == "search":
        recipient, args = "browser.search", {"query": action.get("query", "")}
    elif kind_of == "find_in_page":
        recipient, args = "browser.find", {"pattern": action.get("pattern", ""), "cursor": action.get("url", "")}
    else:
        name = action.get("name") if action.get("name") in ("open", "find", "search") else "open"
        recipient, args = f"browser.{name}", ({"id": action["url"]} if action.get("url") else {})
    result = item.get("result")
    call = Entry("call", json.dumps(args), "analysis", recipient, item_id)
    return [call, Entry("result", result if isinstance(result, str) else "", call_id=item_id)]


def content_text(content: Any) -> str:
    """A message's text: a string, or text parts (input_text, output_text, text, refusal); other fields ignored."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type") in ("input_text", "output_text", "text"):
                parts.append(str(part.get("text", "")))
            elif isinstance(part, dict) and part.get("type") == "refusal":
                parts.append(str(part.get("refusal", "")))
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RequestError(f"content parts of type {kind!r} are not supported (gpt-oss reads text)")
        return "".join(parts)
    raise RequestError("a message's content must be text or a list of text parts")


def output_text(output: Any) -> str:
    """A function output: a string, a list of text parts, or any JSON value (sent on as JSON)."""
    if isinstance(output, str):
        return output
    if isinstance(output, list) and all(isinstance(p, dict) and "text" in p for p in output):
        return "".join(str(p["text"]) for p in output)
    return json.dumps(output)
