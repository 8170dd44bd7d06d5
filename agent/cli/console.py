"""Render events: for people (live, streamed token by token, and replays alike) and for scripts (JSON).

A live run streams the final answer and each tool call's arguments as the
model writes them; a replayed transcript has no token deltas, so the same
view prints each generation's parsed messages instead. Either way a person
sees the same lines.
"""

from __future__ import annotations

import re
import sys
import time
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.status import Status

from harmony_agent import events as ev

#: Characters of a tool result shown on screen unless --verbose (the transcript keeps it whole).
RESULT_PREVIEW = 600
#: A tool running longer than this (seconds) gets a spinner with its elapsed time.
SPINNER_AFTER_S = 1.0
#: A model with no token yet this long (seconds) after it was given its prompt gets a status line saying so.
PREFILL_STATUS_AFTER_S = 2.0


#: What must never reach a terminal from text we did not write: C0 controls but newline and tab, DEL, C1 controls
#: (0x9b is an 8-bit CSI), and the bidirectional overrides that make text read differently from what it is.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return "^" + chr(code + 64)  # ESC is ^[, CR ^M, BEL ^G: as terminals show them with `cat -v`
    return "^?" if code == 0x7F else f"<U+{code:04X}>"


def visible(text: str) -> str:
    """Untrusted text (from a model, a tool, a page, a transcript) made safe for a terminal.

    Control characters are shown as ``^[``, ``^M``, ... instead of acting, so
    an OSC 52 clipboard write, a window title, a hyperlink, a screen clear or
    a cursor move in the text is printed, not performed. Only our own styling
    (through Rich) emits escape sequences. Newlines and tabs stay.
    """
    return _UNSAFE.sub(_shown, text)


def safe(text: object) -> str:
    """Untrusted text for a Rich markup string: control characters made visible, then markup escaped."""
    return escape(visible(str(text)))


def json_safe(text: str) -> str:
    """A JSON document with the control characters JSON leaves raw (C1, bidi overrides) written as ``\\uXXXX``.

    The value read back is exactly the same; the bytes on a terminal hold no
    8-bit CSI. (JSON already escapes C0 controls such as ESC.)
    """
    return _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def make_console(*, stderr: bool = False, file: IO[str] | None = None) -> Console:
    """A console that wraps lines only on a terminal: piped output keeps each line whole for scripts."""
    stream = file or (sys.stderr if stderr else sys.stdout)
    terminal = bool(getattr(stream, "isatty", lambda: False)())
    return Console(file=file, stderr=stderr, highlight=False, soft_wrap=not terminal)


def shorten(text: str, limit: int | None = RESULT_PREVIEW) -> str:
    """``text`` cut to ``limit`` characters with a note of how much is hidden (``None``: whole)."""
    text = text.rstrip()
    if limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters; --verbose shows all]"


def format_duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


class ConsoleView:
    """Prints analysis dimmed, tool calls (arguments streamed) and results, and the final answer in bold.

    Call :meth:`tick` now and then while waiting for events: a tool that has
    run for over a second gets a spinner with its elapsed time (on a terminal),
    and a model that has written nothing two seconds after it was given its
    prompt gets a status line with the prompt's size on ``status_console``
    (stderr in the CLI; a local model on a CPU reads a long first prompt for
    many seconds), gone when its first token arrives. Call :meth:`pause`
    before prompting, so a prompt never lands mid-line.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        show_analysis: bool = True,
        verbose: bool = False,
        status_console: Console | None = None,
    ) -> None:
        self.console = console or make_console()
        self.status_console = status_console or self.console
        self._reading: tuple[int, float] | None = None  # (prompt tokens, since) while the model has written nothing
        self._reading_status: Status | None = None
        self.show_analysis = show_analysis
        self.result_limit: int | None = None if verbose else RESULT_PREVIEW
        self._open: tuple[Any, ...] | None = None
        self._streamed_steps: set[int] = set()
        self._streamed_calls: set[int] = set()
        self._streamed_final: dict[int, str] = {}
        self._running: tuple[str, float] | None = None
        self._status: Status | None = None

    # -- streaming -------------------------------------------------------------------------------------------------

    def _close_stream(self) -> None:
        if self._open is not None:
            self.console.print()
            self._open = None

    def _begin(self, key: tuple[Any, ...], header: str | None) -> None:
        if self._open != key:
            self._close_stream()
            if header:
                self.console.print(header, end="")
            self._open = key

    def _stream(self, step: int, channel: str | None, text: str, recipient: str | None) -> None:
        if not text:
            return
        if recipient:
            self._streamed_calls.add(step)
            self._begin(("call", step, recipient), f"[yellow]→ {safe(recipient)}[/yellow] ")
            self.console.print(safe(text), end="")
        elif channel == "final":
            self._streamed_final[step] = self._streamed_final.get(step, "") + text
            self._begin(("final", step), None)
            self.console.print(safe(text), style="bold", end="")
        else:
            self._other(channel, text)

    def _other(self, channel: str | None, text: str) -> None:
        """Analysis (dimmed) and commentary without a recipient, under their channel's name."""
        if channel == "analysis" and not self.show_analysis:
            return
        self._begin(("channel", channel), f"[dim]{safe(channel or 'message')}:[/dim] ")
        self.console.print(safe(text), style="dim" if channel == "analysis" else "", end="")

    # -- waiting -----------------------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Show (or update) the spinner of a tool that has been running a while, or of a model reading its prompt."""
        self._tick_reading()
        if self._running is None or not self.console.is_terminal:
            return
        recipient, started = self._running
        elapsed = time.perf_counter() - started
        if elapsed < SPINNER_AFTER_S:
            return
        self._status = self._show(
            self._status, self.console, f"[yellow]{safe(recipient)}[/yellow] running… {elapsed:.0f} s"
        )

    def _tick_reading(self) -> None:
        if self._reading is None or not self.status_console.is_terminal:
            return
        tokens, since = self._reading
        elapsed = time.perf_counter() - since
        if elapsed < PREFILL_STATUS_AFTER_S:
            return
        text = f"[dim]reading the prompt ({tokens:,} tokens)… {elapsed:.0f} s[/dim]"
        self._reading_status = self._show(self._reading_status, self.status_console, text)

    def _show(self, status: Status | None, console: Console, text: str) -> Status:
        """Start a status line on ``console`` (ending an open line first), or update the one already shown."""
        if status is None:
            self._close_stream()
            status = console.status(text)
            status.start()
        else:
            status.update(text)
        return status

    def _stop_reading(self, *, done: bool) -> None:
        """Clear the status line (``done``: the model has started writing, or the run ended; no more of it)."""
        if self._reading_status is not None:
            self._reading_status.stop()
            self._reading_status = None
        if done:
            self._reading = None

    def pause(self) -> None:
        """Stop the spinner and end an open line (before a prompt); time at a prompt is not the tool's."""
        self._stop_reading(done=False)
        self._close_stream()
        if self._status is not None:
            self._status.stop()
            self._status = None

    def resume(self) -> None:
        """After a prompt: the tool's clock starts now."""
        if self._running is not None:
            self._running = (self._running[0], time.perf_counter())

    # -- events --------------------------------------------------------------------------------------------------------

    def handle(self, event: ev.Event) -> None:
        c = self.console
        if isinstance(event, ev.GenerationStartEvent):
            self._reading = (event.prompt_tokens, time.perf_counter())
            return
        if isinstance(event, (ev.TokenDeltaEvent, ev.GenerationEvent, ev.RunEndEvent)):
            self._stop_reading(done=True)
        if isinstance(event, ev.TokenDeltaEvent):
            self._streamed_steps.add(event.step)
            self._stream(event.step, event.channel, event.text, event.recipient)
            return
        if isinstance(event, ev.GenerationEvent):
            if event.step not in self._streamed_steps:  # a replayed transcript: no deltas, print what they streamed
                for message in event.messages:
                    if message.channel != "final" and not message.recipient:
                        self._other(message.channel, message.text)
            if self._open is not None and self._open[0] == "channel":
                self._close_stream()
            return
        self.pause()
        if isinstance(event, ev.RunStartEvent):
            self._streamed_steps.clear()
            self._streamed_calls.clear()
            self._streamed_final.clear()
            tools = ", ".join(event.tools) or "none"
            c.print(f"[bold cyan]task[/bold cyan] {safe(event.task)}")
            c.print(f"[dim]model {safe(event.model)} · tools {safe(tools)} · reasoning {safe(event.reasoning)}[/dim]")
        elif isinstance(event, ev.ToolCallEvent):
            if event.step not in self._streamed_calls:
                c.print(f"[yellow]→ {safe(event.recipient)}[/yellow] {safe(shorten(event.content, 400))}")
            self._running = (event.recipient, time.perf_counter())
        elif isinstance(event, ev.ToolResultEvent):
            self._running = None
            colour = "red" if event.is_error else "green"
            tag = "refused" if event.refused else format_duration(event.duration_s)
            content = safe(shorten(event.content, self.result_limit))
            c.print(f"[{colour}]← {safe(event.recipient)}[/{colour}] [dim]({tag})[/dim] {content}")
        elif isinstance(event, ev.FinalEvent):
            if self._streamed_final.get(event.step, "").strip() != event.text.strip():
                c.print(f"[bold]{safe(event.text)}[/bold]")
        elif isinstance(event, ev.ErrorEvent):
            colour = "yellow" if event.recovered else "red"
            c.print(f"[{colour}]! {safe(event.kind)}: {safe(event.message)}[/{colour}]")
        elif isinstance(event, ev.RunEndEvent):
            self._print_sources(event.sources)
            if event.files:  # host paths we chose, inside the output folder; escaped all the same
                c.print("[dim]files:[/dim] " + ", ".join(escape(path) for path in event.files))
            u = event.usage
            c.print(
                f"[dim]stop: {safe(event.stop_reason)} · steps {event.steps} · prompt {u.prompt_tokens} "
                f"(prefilled {u.prefilled_tokens}) · generated {u.completion_tokens} tokens[/dim]"
            )

    def _print_sources(self, cited: list[ev.Source]) -> None:
        """The pages the answer cites, under it, so a person can follow each 【cursor†lines】 mark."""
        if cited:
            self.console.print("[dim]sources:[/dim]")
        for source in cited:
            where = safe(source.url) if source.url else "[dim](a page not shown in this conversation)[/dim]"
            self.console.print(f"  [dim]【{source.cursor}†{safe(source.lines)}】[/dim] {where}")


class QuietView:
    """``--quiet``: only the final answer, as plain text (errors go to stderr through the caller)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream

    def handle(self, event: ev.Event) -> None:
        if isinstance(event, ev.FinalEvent):
            out = self.stream or sys.stdout
            out.write(visible(event.text.rstrip("\n")) + "\n")
            out.flush()

    def tick(self) -> None:
        pass

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass


class JsonEventsView(QuietView):
    """``--json=events``: every event as one JSON line, token deltas included, flushed as it happens."""

    def handle(self, event: ev.Event) -> None:
        out = self.stream or sys.stdout
        out.write(json_safe(event.model_dump_json()) + "\n")
        out.flush()


class SilentView(QuietView):
    """``--json``: nothing while the run goes; the caller prints one object at the end."""

    def handle(self, event: ev.Event) -> None:
        pass


def result_object(end: ev.RunEndEvent | None, transcript: str | None, error: str | None = None) -> dict[str, Any]:
    """What ``--json`` prints: the outcome of a run, in one object (``sources``: the pages the answer cites)."""
    if end is None:
        return {
            "final_text": None,
            "stop_reason": "interrupted" if error is None else "error",
            "steps": 0,
            "usage": ev.Usage().model_dump(),
            "error": error,
            "transcript": transcript,
            "sources": [],
            "files": [],
        }
    return {
        "final_text": end.final_text,
        "stop_reason": end.stop_reason,
        "steps": end.steps,
        "usage": end.usage.model_dump(),
        "error": end.error,
        "transcript": transcript,
        "sources": [source.model_dump() for source in end.sources],
        "files": list(end.files),
    }
