"""Driving turns from the command line with the keyboard in charge.

The turn runs on a worker thread; the main thread only prints events and asks
questions. That way Ctrl-C always lands in the main thread, at the chat
prompt, at an approval prompt or while the model writes, and interrupts at
once (the turn is cancelled, its tools closed, exit code 130), instead of
waiting behind a blocked read on another thread.

Approval requests travel the same way: the agent's approval hook (on the
session's loop) hands the call to the main thread and waits for the answer,
so the prompt, the event stream and the spinner never interleave.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import sys
from typing import Any, Protocol

from rich.console import Console

from harmony_agent import events as ev
from harmony_agent.cli.console import safe, shorten
from harmony_agent.results import RunResult
from harmony_agent.sandboxes.runtime import runtime
from harmony_agent.tools.base import ToolCall

#: Seconds between spinner updates while waiting for the next event.
_TICK_S = 0.1


class View(Protocol):
    def handle(self, event: ev.Event) -> None: ...
    def tick(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


def tool_key(recipient: str) -> str:
    """What "always allow" covers: a function (``functions.get_weather``), else a whole built-in tool (``browser``)."""
    namespace = recipient.split(".", 1)[0]
    return recipient if namespace == "functions" else namespace


class ApprovalPrompt:
    """Asks the person at the terminal about each tool call: yes, no (with a reason), or always for that tool.

    The default (an empty answer) is no. Ctrl-D refuses with a reason the
    model can read; Ctrl-C propagates (the caller exits with 130).
    """

    QUESTION = "[bold]allow?[/bold] [[bold]y[/bold]]es / [[bold]N[/bold]]o / [[bold]a[/bold]]lways for {key}: "

    def __init__(self, console: Console, *, show_call: bool = False) -> None:
        self.console = console
        #: Print the call's arguments with the question (when the run's view does not show them: --quiet, --json).
        self.show_call = show_call
        self.always: set[str] = set()

    def _read(self, prompt: str) -> str:
        self.console.print(prompt, end="")
        self.console.file.flush()
        return input()

    def ask(self, call: ToolCall) -> bool | str:
        key = tool_key(call.recipient)
        if key in self.always:
            return True
        if self.show_call:
            self.console.print(
                f"[yellow]{safe(call.recipient)}[/yellow] wants to run: {safe(shorten(call.content, 800))}"
            )
        while True:
            try:
                answer = self._read(self.QUESTION.format(key=safe(key))).strip().lower()
            except EOFError:
                self.console.print("\n[red]refused[/red] (end of input)")
                return "the user refused this call (they closed the approval prompt with Ctrl-D)"
            if answer in ("y", "yes"):
                return True
            if answer in ("a", "always"):
                self.always.add(key)
                self.console.print(f"[dim]{safe(key)} is allowed for the rest of this session[/dim]")
                return True
            if answer in ("", "n", "no"):
                try:
                    reason = self._read("reason for the model (optional, enter to skip): ").strip()
                except EOFError:
                    reason = ""
                return f"the user declined this call: {reason}" if reason else "the user declined this call"
            self.console.print("[dim]answer y, n or a[/dim]")


class TurnDriver:
    """Runs an agent's turns on a worker thread, feeding events and approval requests to the main thread."""

    def __init__(self, view: View, prompt: ApprovalPrompt | None, *, interactive: bool) -> None:
        self.view = view
        self.prompt = prompt
        self.interactive = interactive
        self.agent: Any = None
        self._worker = runtime()  # the turn is driven on the runtime, where the session runs
        self._queue: queue.Queue[tuple[str, Any]] | None = None

    async def approve(self, call: ToolCall) -> bool | str:
        """The agent's approval hook (runs on the session's loop): ask on the main thread, wait for the answer."""
        if self.prompt is None or not self.interactive or self._queue is None:
            return 'not approved: no terminal to ask on (pass --yes, or approve = "always" in the config file)'
        answer: concurrent.futures.Future[bool | str] = concurrent.futures.Future()
        self._queue.put(("approval", (call, answer)))
        return await asyncio.wrap_future(answer)

    def turn(self, task: str, previous: RunResult | None = None) -> ev.RunEndEvent | None:
        """Run one turn to its end; returns its RunEndEvent. KeyboardInterrupt cancels the turn and propagates."""
        inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._queue = inbox

        async def produce() -> None:
            try:
                async for event in self.agent.stream(task, previous=previous):
                    inbox.put(("event", event))
            except BaseException as exc:  # handed to the main thread, which re-raises it
                inbox.put(("error", exc))
                raise
            finally:
                inbox.put(("done", None))

        # The stream is consumed on the runtime itself (the session's loop, which outlives every turn), so the
        # events need no hop between loops and a cancelled stream's last hand-offs still find it open.
        job = asyncio.run_coroutine_threadsafe(produce(), self._worker.loop)
        end: ev.RunEndEvent | None = None
        # An approval request comes straight from the session's loop and can overtake the events before
        # it (they travel through the stream): it waits until its call's ToolCallEvent has been shown.
        shown: dict[str, str] = {}  # call_id -> content of calls shown and not yet approved or answered
        parked: list[tuple[ToolCall, concurrent.futures.Future]] = []

        def answer_ready() -> None:
            for request in list(parked):
                match = next((cid for cid, content in shown.items() if content == request[0].content), None)
                if match is not None:
                    parked.remove(request)
                    del shown[match]
                    self._answer(*request)

        try:
            while True:
                try:
                    kind, item = inbox.get(timeout=_TICK_S)
                except queue.Empty:
                    self.view.tick()
                    continue
                if kind == "event":
                    self.view.handle(item)
                    if isinstance(item, ev.ToolCallEvent):
                        shown[item.call_id] = item.content
                    elif isinstance(item, ev.ToolResultEvent):
                        shown.pop(item.call_id, None)
                    elif isinstance(item, ev.RunEndEvent):
                        end = item
                    answer_ready()
                elif kind == "approval":
                    parked.append(item)
                    answer_ready()
                elif kind == "error":
                    if not isinstance(item, asyncio.CancelledError):
                        raise item
                else:
                    return end
        except BaseException:
            self.view.pause()
            job.cancel()
            try:
                job.result(timeout=10)
            except BaseException:  # the cancellation itself, or what the turn raised while it ended
                pass
            raise
        finally:
            self._queue = None

    def _answer(self, call: ToolCall, answer: concurrent.futures.Future) -> None:
        """Put an approval request to the person (on this, the main thread) and hand back the verdict."""
        self.view.pause()
        # Ctrl-C here propagates with the answer left pending: the turn is being cancelled, and an answer
        # arriving at the same moment could let the cancellation slip past the approval wait.
        verdict = self.prompt.ask(call) if self.prompt is not None else False
        answer.set_result(verdict)
        self.view.resume()

    def close(self) -> None:
        """Nothing of its own to stop: the runtime serves the whole process (the agent closes its sessions)."""


def interrupted(console: Console) -> None:
    """Say so on stderr, on a line of its own."""
    console.print("\n[yellow]interrupted[/yellow]")
    if hasattr(sys.stderr, "flush"):
        sys.stderr.flush()
