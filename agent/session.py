"""A session: the live side of an agent.

An :class:`~agent.Agent` is configuration (model, tools, instructions,
budgets). A session owns what a run brings to life: the tools' sandboxes,
browser context and display, and the conversation so far. Its work runs on
the process's one runtime loop (:mod:`harmony_agent.sandboxes.runtime`), shared with
every other session, so sessions are isolated by what they own rather than
by threads. Turns of one session share that state, whether they are started
with ``run()`` from plain code or ``await arun()`` from an async program, in
any mix. One turn runs at a time; a second one started while the first is in
progress is refused with :class:`SessionBusyError` rather than sharing a
kernel or a browser's cursor stack by accident.
"""

from __future__ import annotations

import asyncio

# Imported before the exit hook below is registered: threading runs its exit hooks in reverse order, so the thread
# pools' own hook (registered at this import) then runs after sessions close, while tools can still use to_thread.
import concurrent.futures.thread  # noqa: F401
import itertools
import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from openai_harmony import Message

from harmony_agent import events as ev
from harmony_agent.citations import PagesSeen
from harmony_agent.history import History
from harmony_agent.loop import TurnSettings, run_turn
from harmony_agent.models import Model
from harmony_agent.results import PendingCall, RunResult
from harmony_agent.routing import Router
from harmony_agent.sandboxes.runtime import Runtime, runtime
from harmony_agent.tools.base import Tool, ToolCall, ToolResult, result_message
from harmony_agent.transcript import Transcript

log = logging.getLogger("harmony_agent.session")

_numbers = itertools.count(1)
_live: weakref.WeakSet[Session] = weakref.WeakSet()
_exit_hook_pid = 0  # the process whose runtime has the exit hook (a forked child installs its own)
_exit_hook_guard = threading.Lock()


class SessionBusyError(RuntimeError):
    """A turn was started on a session that is already running one."""


class SessionClosedError(RuntimeError):
    """A turn was started on a session that was closed."""


class SessionSettings(Protocol):
    """What a session reads from the configuration it serves (an :class:`~harmony_agent.Agent` is one).

    A protocol rather than the Agent class, so the session depends on what it uses and the agent
    module, which makes sessions, is the only one of the two that knows the other.
    """

    model: Model
    transcript: Transcript | None
    reasoning: str
    output_dir: str | os.PathLike[str] | None

    def preamble(self) -> list[Message]: ...

    def turn_settings(self) -> TurnSettings: ...


class Session:
    """The live resources of one conversation thread of an agent; see the module's docstring.

    Make one with :meth:`Agent.session`. Use it as a context manager (``with``
    or ``async with``), or call :meth:`close` / :meth:`aclose`; a session
    still open at interpreter exit is closed then.
    """

    def __init__(
        self,
        agent: SessionSettings,
        tools: Sequence[Tool],
        *,
        owned: Sequence[Tool] | None = None,
        output_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.agent = agent
        self.number = next(_numbers)
        self.tools = list(tools)
        #: This session's id, and the host folder its tools' files come home to (see :meth:`_bring_home`).
        self.run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        chosen = output_dir if output_dir is not None else agent.output_dir
        self.output_dir = Path(chosen if chosen is not None else Path("runs") / self.run_id).absolute()
        for tool in self.tools:  # tools that copy files out (the python tool) copy them here, unless told elsewhere
            if hasattr(tool, "output_dir") and tool.output_dir is None:
                tool.output_dir = self.output_dir
        self.router = Router(self.tools)
        self.last_result: RunResult | None = None
        self.pages = PagesSeen()  # what the browser showed in this conversation: the sources answers cite
        #: Lines the tools said when they started (which sandbox, which display).
        self.start_notes: list[str] = []
        # The tools this session closes: those made for it (a tool shared with other sessions, like an MCP
        # connection the user said to share, is closed by whoever made it).
        self._owned = list(self.tools if owned is None else owned)
        self._runtime: Runtime = runtime()
        self._busy = threading.Lock()
        self._started = False
        self._closed = False
        self._start_guard: asyncio.Lock | None = None
        _register(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "started" if self._started else "new"
        return f"<Session {self.number} {state}: {', '.join(self.router.available()) or 'no tools'}>"

    @property
    def closed(self) -> bool:
        return self._closed

    # -- starting ----------------------------------------------------------------

    async def start(self) -> list[str]:
        """Start the model and the tools now rather than at the first step; returns what the tools said."""
        self._check_open()
        return await self._runtime.run_async(self._start())

    async def _start(self, problems: list[str] | None = None) -> list[str]:
        """Start the model, then each tool. With ``problems``, a tool that fails to start is noted there
        and left to start (and report) at its first call, instead of raising."""
        if self._start_guard is None:
            self._start_guard = asyncio.Lock()
        async with self._start_guard:
            if not self._started:
                await self.agent.model.start()
                for tool in self.tools:
                    try:
                        line = await tool.start()
                    except Exception as exc:
                        if problems is None:
                            raise
                        problems.append(f"{type(tool).__name__} did not start: {exc}")
                        continue
                    if line:
                        self.start_notes.append(line)
                self._started = True
        return list(self.start_notes)

    async def perform(self, coroutine: Any) -> Any:
        """Await ``coroutine`` on the runtime, where the session's tools' resources live (checks use this)."""
        self._check_open()
        return await self._runtime.run_async(coroutine)

    # -- turns -------------------------------------------------------------------

    def run(
        self, task: str | None, *, previous: RunResult | None = None, tool_outputs: Mapping[str, str] | None = None
    ) -> RunResult:
        """Run a turn to completion, blocking. Continue a conversation with ``previous=``; answer the
        calls it paused on (``previous.pending_calls``) with ``tool_outputs={call_id: text}``."""
        self._claim()
        try:
            return self._runtime.run(self._collect(task, previous, tool_outputs))
        finally:
            self._busy.release()

    async def arun(
        self, task: str | None, *, previous: RunResult | None = None, tool_outputs: Mapping[str, str] | None = None
    ) -> RunResult:
        """Run a turn to completion from async code (any event loop)."""
        self._claim()
        try:
            return await self._runtime.run_async(self._collect(task, previous, tool_outputs))
        finally:
            self._busy.release()

    async def stream(
        self, task: str | None, *, previous: RunResult | None = None, tool_outputs: Mapping[str, str] | None = None
    ) -> AsyncGenerator[ev.Event, None]:
        """Run a turn, yielding typed events as they happen (the last is a RunEndEvent)."""
        self._claim()
        try:
            async for event in self._runtime.relay(lambda: self._turn(task, previous, tool_outputs)):
                yield event
        finally:
            self._busy.release()

    def _claim(self) -> None:
        self._check_open()
        if not self._busy.acquire(blocking=False):
            raise SessionBusyError(
                f"session {self.number} is already running a turn; wait for it, or start a parallel run in a "
                "session of its own (agent.session())"
            )

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosedError(f"session {self.number} was closed; start a new one with agent.session()")

    async def _collect(
        self, task: str | None, previous: RunResult | None, tool_outputs: Mapping[str, str] | None
    ) -> RunResult:
        async for _ in self._turn(task, previous, tool_outputs):
            pass
        assert self.last_result is not None
        return self.last_result

    async def _turn(
        self, task: str | None, previous: RunResult | None, tool_outputs: Mapping[str, str] | None = None
    ) -> AsyncGenerator[ev.Event, None]:
        """One turn on the runtime loop (the caller holds the busy claim)."""
        replies = _answers(previous, tool_outputs)
        if not task and not replies:
            raise ValueError("a turn needs a task, or tool_outputs answering the previous result's pending calls")
        collected: list[ev.Event] = []

        def emit(event: ev.Event) -> ev.Event:
            self.pages.see(event)
            collected.append(event)
            if self.agent.transcript is not None:
                self.agent.transcript.write(event)
            return event

        yield emit(
            ev.RunStartEvent(
                task=task or "",
                model=self.agent.model.name,
                tools=self.router.available(),
                reasoning=self.agent.reasoning,
                output_dir=str(self.output_dir),
            )
        )
        problems: list[str] = []
        try:
            await self._start(problems)
        except Exception as exc:  # the model's server is down, say: the run ends with the reason
            error = f"the model could not start: {type(exc).__name__}: {exc}"
            yield emit(ev.ErrorEvent(kind="model", recovered=False, message=error))
            usage = ev.Usage()
            yield emit(ev.RunEndEvent(stop_reason="model_error", steps=0, usage=usage, error=error))
            self.last_result = RunResult(
                None,
                "model_error",
                0,
                usage,
                [],
                collected,
                error,
                [],
                session_number=self.number,
                _history=previous._history if previous is not None else None,
            )
            return
        for problem in problems:
            yield emit(ev.ErrorEvent(kind="tool", message=problem))
        # A result keeps the conversation as it was when its run ended, so continuing an
        # older result branches from there (the tools' own state is the session's, not rewound).
        if previous is not None and previous._history is not None:
            history = previous._history.copy()
        else:
            history = History(self.agent.preamble())
        history.add_tool_messages(replies)
        if task:
            history.add_user(task)
        pending: list[PendingCall] = []
        async for event in run_turn(self.agent.model, self.router, history, self.agent.turn_settings(), pending):
            if isinstance(event, ev.RunEndEvent):
                files, notes = await self._bring_home(collected)
                for note in notes:
                    yield emit(ev.ErrorEvent(kind="tool", message=note))
                event = event.model_copy(update={"sources": self.pages.sources(event.final_text), "files": files})
                # The result is ready before its last event is seen: a listener may stop reading there.
                collected.append(event)
                self.last_result = RunResult(
                    event.final_text,
                    event.stop_reason,
                    event.steps,
                    event.usage,
                    history.messages,
                    collected,
                    event.error,
                    pending,
                    session_number=self.number,
                    _history=history.copy(),
                )
                collected.pop()
            yield emit(event)

    async def _bring_home(self, events: list[ev.Event]) -> tuple[list[str], list[str]]:
        """Copy what the tools made this turn into the output folder; returns (host paths, notes on what was left).

        The figures the python tool showed were copied as it answered; the rest of its data folder comes now,
        through the sandbox and within its caps (see ``sandboxes.outbox``).
        """
        found = [
            path
            for event in events
            if isinstance(event, ev.ToolResultEvent)
            for path in event.images
            if Path(path).is_relative_to(self.output_dir)
        ]
        notes: list[str] = []
        for tool in self.tools:
            bring = getattr(tool, "bring_home", None)
            if bring is None:
                continue
            try:
                collected = await bring(self.output_dir)
            except Exception as exc:  # the run's answer stands; the user is told what did not come home
                notes.append(f"files of {type(tool).__name__} were not copied out: {type(exc).__name__}: {exc}")
                continue
            found += [str(path) for path in collected.files]
            notes += collected.notes
        return list(dict.fromkeys(found)), notes

    # -- closing -----------------------------------------------------------------

    async def aclose(self) -> None:
        """Release the tools' resources (once); the runtime goes on serving other sessions."""
        if self._closed:
            return
        self._closed = True
        if self._owned:
            await self._runtime.run_async(self._close_tools())

    def close(self) -> None:
        """Blocking form of :meth:`aclose`."""
        if self._closed:
            return
        self._closed = True
        if self._owned:
            self._runtime.run(self._close_tools())

    async def _close_tools(self) -> None:
        for tool in self._owned:
            if tool.held_by_user:  # entered with `with`/`async with` by its maker, who closes it on leaving
                continue
            try:
                await tool.aclose()
            except Exception as exc:  # one tool failing to close must not keep the others open
                log.warning("closing %s failed: %s", type(tool).__name__, exc)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


def _answers(previous: RunResult | None, tool_outputs: Mapping[str, str] | None) -> list:
    """The tool messages answering ``previous``'s pending calls; every pending call needs its answer."""
    if not tool_outputs:
        if previous is not None and previous.pending_calls:
            waiting = ", ".join(c.call_id for c in previous.pending_calls)
            raise ValueError(f"the previous turn is waiting for tool outputs ({waiting}); pass tool_outputs=")
        return []
    pending: dict[str, PendingCall] = {c.call_id: c for c in previous.pending_calls} if previous is not None else {}
    unknown = [call_id for call_id in tool_outputs if call_id not in pending]
    missing = [call_id for call_id in pending if call_id not in tool_outputs]
    if unknown or missing:
        raise ValueError(
            f"tool_outputs must answer exactly the pending calls {sorted(pending) or 'none'}; "
            f"unknown: {unknown or 'none'}, missing: {missing or 'none'}"
        )
    return [
        result_message(
            ToolCall(call.recipient, call.channel, call.arguments), ToolResult(output=str(tool_outputs[call.call_id]))
        )
        for call in pending.values()
    ]


def _register(session: Session) -> None:
    """Remember a live session, so interpreter exit closes it (before the shared things it uses)."""
    global _exit_hook_pid
    _live.add(session)
    with _exit_hook_guard:
        if _exit_hook_pid != os.getpid():
            runtime().on_exit(_close_live_sessions)
            _exit_hook_pid = os.getpid()


def _close_live_sessions() -> None:
    for session in list(_live):
        try:
            session.close()
        except Exception as exc:  # exit goes on; the sandboxes' own exit handlers are the backstop
            log.warning("closing session %s at exit failed: %s", session.number, exc)
