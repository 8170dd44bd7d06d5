"""The tool interface: what a tool tells the model, and how it answers a call.

A tool is routed by its recipient name, as in harmony: built-in tools
(``python``, ``browser``) are namespaces described in the system message,
function tools live in the ``functions`` namespace of the developer message.
A call takes the assistant's message and returns harmony messages authored by
the tool, addressed to the assistant, on the call's channel.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openai_harmony import Author, Message, Role, ToolDescription, ToolNamespaceConfig

FUNCTIONS_NAMESPACE = "functions"


class ToolError(Exception):
    """Raised by a tool for a failure the model should read and act on."""


@dataclass(frozen=True)
class ToolResult:
    """What a tool call produced.

    ``output`` is what the model reads; ``error`` marks the call as failed
    (the model reads it too). ``files`` and ``images`` are paths the tool
    created, for transcripts and reports.
    """

    output: str = ""
    error: str | None = None
    files: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_error(self) -> bool:
        return self.error is not None

    def text(self) -> str:
        """The text the model sees."""
        if self.error is None:
            return self.output
        return f"{self.output}\n\nError: {self.error}" if self.output else f"Error: {self.error}"


@dataclass(frozen=True)
class ToolCall:
    """One call, as addressed by the model (after alias resolution).

    ``recipient`` is canonical (``functions.get_weather``, ``browser.open``,
    ``python``); ``name`` is the part after the namespace (empty for a bare
    namespace like ``python``).
    """

    recipient: str
    channel: str | None
    content: str
    content_type: str | None = None

    @property
    def namespace(self) -> str:
        return self.recipient.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.recipient.split(".", 1)[1] if "." in self.recipient else ""

    @classmethod
    def from_message(cls, message: Message, recipient: str | None = None) -> ToolCall:
        text = "".join(getattr(part, "text", "") for part in message.content)
        return cls(recipient or message.recipient or "", message.channel, text, message.content_type)


def parse_arguments(call: ToolCall) -> dict[str, Any]:
    """Decode a call's JSON arguments, tolerating what gpt-oss emits.

    Empty content means no arguments; a one-element array wrapping an object
    is unwrapped. Anything else that is not a JSON object is a ToolError
    carrying the parser's message, so the model can fix its call.
    """
    text = call.content.strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolError(
            f"arguments are not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); send a JSON object"
        ) from None
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        value = value[0]
    if not isinstance(value, dict):
        raise ToolError(f"arguments must be a JSON object, got {type(value).__name__}")
    return value


class Tool(ABC):
    """Base class of every tool.

    Subclasses set ``namespace`` and implement :meth:`descriptions` and
    :meth:`_process`; callers use :meth:`process`. A tool in the ``functions`` namespace is rendered in the
    developer message; any other namespace is a built-in tool rendered in the
    system message via :meth:`namespace_config`.
    """

    namespace: str = FUNCTIONS_NAMESPACE
    namespace_description: str = ""
    #: Calls to this tool are answered by whoever runs the agent, not by :meth:`process`: the turn
    #: pauses with the call pending (a Responses API client's own functions work this way).
    answered_by_caller: bool = False

    @property
    def is_builtin(self) -> bool:
        return self.namespace != FUNCTIONS_NAMESPACE

    @abstractmethod
    def descriptions(self) -> list[ToolDescription]:
        """The functions this tool offers (for a built-in tool, its namespace's functions)."""

    def namespace_config(self) -> ToolNamespaceConfig | None:
        """For a built-in tool: the namespace block of the system message."""
        if not self.is_builtin:
            return None
        return ToolNamespaceConfig(
            name=self.namespace, description=self.namespace_description, tools=self.descriptions()
        )

    def recipients(self) -> list[str]:
        """Canonical recipient names this tool answers."""
        names = [f"{self.namespace}.{d.name}" for d in self.descriptions()]
        return names or [self.namespace]

    async def process(self, call: ToolCall) -> ToolResult:
        """Answer one call: the one public entry point, which never raises for the tool's own failures.

        A :class:`ToolError` becomes an error result with its message; any other exception
        becomes one naming its type, since a tool's bug must not end the run: the model is told.
        """
        try:
            return await self._process(call)
        except ToolError as exc:
            return ToolResult(error=str(exc))
        except Exception as exc:
            return ToolResult(error=f"{type(exc).__name__}: {exc}")

    @abstractmethod
    async def _process(self, call: ToolCall) -> ToolResult:
        """Do the work of one call: the one method a tool overrides.

        Raise :class:`ToolError` for failures the model should read and act on.
        """

    def fresh(self) -> Tool:
        """This tool for another session: the same configuration, none of this one's live state.

        Stateless tools (function tools) return themselves. A tool that holds
        live state (a kernel, a browser, a display) returns a new, unstarted
        copy, so two sessions never share it; one that cannot raises
        :class:`ToolError` saying why.
        """
        return self

    async def relist(self) -> bool:
        """Fetch this tool's functions again if they may have changed while the session runs; True if they did.

        The router asks when the model calls a name it does not know, so a
        function a server added mid-session (an MCP server's ``list_changed``)
        is callable at once. Tools with a fixed set of functions keep the default.
        """
        return False

    async def start(self) -> str | None:
        """Acquire resources now rather than at the first call; may return a line telling the user what was set up."""
        return None

    async def aclose(self) -> None:
        """Release resources (containers, browsers, displays)."""


def result_message(call: ToolCall, result: ToolResult) -> Message:
    """The harmony message carrying a tool's result back to the assistant."""
    message = Message.from_author_and_content(Author.new(Role.TOOL, call.recipient or "unknown"), result.text())
    message = message.with_recipient("assistant")
    if call.channel:
        message = message.with_channel(call.channel)
    return message
