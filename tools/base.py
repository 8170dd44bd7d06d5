"""The tool interface: what a tool tells the model, and how it answers a call.

A tool is routed by its recipient name, as in harmony: built-in tools
(``python``, ``browser``) are namespaces described in the system message,
function tools live in the ``functions`` namespace of the developer message.
A call takes the assistant's message and returns harmony messages authored by
the tool, addressed to the assistant, on the call's channel.
"""

from __future__ import annotations

import asyncio
import functools
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from openai_harmony import Author, Message, Role, ToolDescription, ToolNamespaceConfig

from harmony_agent.sandboxes.runtime import on_runtime, runtime

FUNCTIONS_NAMESPACE = "functions"
T = TypeVar("T")


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
    #: The event loop this tool's live resources were made on (see :meth:`_at_home`); None until first use.
    _home: asyncio.AbstractEventLoop | None = None
    #: Entered with ``with``/``async with`` by its maker: a session using it leaves the closing to them.
    held_by_user: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass's own ``start`` and ``aclose`` run at the tool's home loop, whoever calls them."""
        super().__init_subclass__(**kwargs)
        for name, attach in (("start", True), ("aclose", False)):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_homed", False):
                setattr(cls, name, _homed(method, attach=attach))

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
            return await self._at_home(self._process(call), attach=False)
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

    # -- where the live resources are ---------------------------------------------

    async def _at_home(self, coroutine: Coroutine[Any, Any, T], *, attach: bool) -> T:
        """Await ``coroutine`` on the loop this tool's resources live on, from whichever loop calls.

        A kernel's pipes, a browser context and an MCP connection belong to the event loop that made them.
        The rule: a tool started (``start``, ``with``, ``async with``, or by a session) lives on the process's
        runtime, where every session runs; a tool that is only called (``process``) before that lives on the
        loop of its first call (code that drives a tool by hand, on a loop of its own, keeps working there).
        Calls from any other loop are handed to the home loop; if that loop has ended, the call is refused
        with a clear error instead of touching dead asyncio objects. A tool without live state (one that
        does not override :meth:`fresh`, such as a function tool) runs wherever it is called.
        """
        if type(self).fresh is Tool.fresh:
            return await coroutine
        current = asyncio.get_running_loop()
        home = self._home
        if home is not None and home.is_closed():
            coroutine.close()
            raise ToolError(
                f"{type(self).__name__} was first used on an event loop that has since closed, and its resources "
                "went with it; close it (aclose) and use it again, or start it with start() or `async with`, which "
                "keeps it on harmony-agent's runtime, usable from any thread or loop"
            )
        if home is None:
            home = self._home = runtime().loop if attach or on_runtime() else current
        if home is current:
            return await coroutine
        if home is runtime().loop:
            return await runtime().run_async(coroutine)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, home))

    def __enter__(self) -> Tool:
        """Start the tool on the runtime (blocking); leaving the block closes it."""
        runtime().run(self.start())
        self.held_by_user = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self.held_by_user = False
        runtime().run(self.aclose())

    async def __aenter__(self) -> Tool:
        """Start the tool on the runtime, from any loop; leaving the block closes it."""
        await self.start()
        self.held_by_user = True
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.held_by_user = False
        await self.aclose()


def _homed(method: Callable[..., Any], *, attach: bool) -> Callable[..., Any]:
    """Wrap a tool's ``start`` (which makes the runtime its home) or ``aclose`` (run at home, then leave it)."""

    @functools.wraps(method)
    async def wrapper(self: Tool, *args: Any, **kwargs: Any) -> Any:
        if attach:
            return await self._at_home(method(self, *args, **kwargs), attach=True)
        home, self._home = self._home, None  # closed, the tool may be used again and find a new home
        if home is None or home.is_closed() or home is asyncio.get_running_loop():
            return await method(self, *args, **kwargs)  # nothing live elsewhere, or nowhere left to go: in place
        self._home = home
        try:
            return await self._at_home(method(self, *args, **kwargs), attach=False)
        finally:
            self._home = None

    wrapper._homed = True  # type: ignore[attr-defined]  # a marker set on the function object itself
    return wrapper


# Wrapping the base class's methods in place is the point: every subclass's start/aclose runs at home.
Tool.start = _homed(Tool.start, attach=True)  # type: ignore[method-assign]  # wrapped in place on purpose
Tool.aclose = _homed(Tool.aclose, attach=False)  # type: ignore[method-assign]  # wrapped in place on purpose


def result_message(call: ToolCall, result: ToolResult) -> Message:
    """The harmony message carrying a tool's result back to the assistant."""
    message = Message.from_author_and_content(Author.new(Role.TOOL, call.recipient or "unknown"), result.text())
    message = message.with_recipient("assistant")
    if call.channel:
        message = message.with_channel(call.channel)
    return message
