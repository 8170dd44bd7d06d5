"""Render events for people: live runs and replays print the same way."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from . import events as ev

_PREVIEW = 600


def _preview(text: str, limit: int = _PREVIEW) -> str:
    text = text.rstrip()
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text) - limit} more characters]"


class ConsoleView:
    """Prints analysis dimmed, tool calls and results, and the final answer in bold."""

    def __init__(self, console: Console | None = None, *, show_analysis: bool = True) -> None:
        self.console = console or Console(highlight=False)
        self.show_analysis = show_analysis
        self._open_channel: str | None = None
        self._streamed_steps: set[int] = set()

    def _close_stream(self) -> None:
        if self._open_channel is not None:
            self.console.print()
            self._open_channel = None

    def _stream_text(self, channel: str | None, text: str, recipient: str | None) -> None:
        if channel == "final" or recipient or not text:
            return  # the final answer and tool calls are printed whole by their own events
        if channel == "analysis" and not self.show_analysis:
            return
        if self._open_channel != channel:
            self._close_stream()
            self.console.print(f"[dim]{channel or 'message'}:[/dim] ", end="")
            self._open_channel = channel
        self.console.print(escape(text), style="dim" if channel == "analysis" else "", end="")

    def handle(self, event: ev.Event) -> None:
        c = self.console
        if isinstance(event, ev.GenerationEvent):
            if event.step not in self._streamed_steps:  # a replayed transcript: no deltas, print what they streamed
                for message in event.messages:
                    self._stream_text(message.channel, message.text, message.recipient)
            self._close_stream()
            return
        if isinstance(event, ev.TokenDeltaEvent):
            self._streamed_steps.add(event.step)
            self._stream_text(event.channel, event.text, event.recipient)
            return
        self._close_stream()
        if isinstance(event, ev.RunStartEvent):
            self._streamed_steps.clear()
            tools = ", ".join(event.tools) or "none"
            c.print(f"[bold cyan]task[/bold cyan] {escape(event.task)}")
            c.print(f"[dim]model {escape(event.model)} · tools {escape(tools)} · reasoning {event.reasoning}[/dim]")
        elif isinstance(event, ev.ToolCallEvent):
            c.print(f"[yellow]→ {escape(event.recipient)}[/yellow] {escape(_preview(event.content, 400))}")
        elif isinstance(event, ev.ToolResultEvent):
            colour = "red" if event.is_error else "green"
            tag = "refused" if event.refused else f"{event.duration_s * 1000:.0f} ms"
            c.print(f"[{colour}]← {escape(event.recipient)}[/{colour}] [dim]({tag})[/dim] {escape(_preview(event.content))}")
        elif isinstance(event, ev.FinalEvent):
            c.print(f"[bold]{escape(event.text)}[/bold]")
        elif isinstance(event, ev.ErrorEvent):
            colour = "yellow" if event.recovered else "red"
            c.print(f"[{colour}]! {event.kind}: {escape(event.message)}[/{colour}]")
        elif isinstance(event, ev.RunEndEvent):
            u = event.usage
            c.print(
                f"[dim]stop: {event.stop_reason} · steps {event.steps} · prompt {u.prompt_tokens} "
                f"(prefilled {u.prefilled_tokens}) · generated {u.completion_tokens} tokens[/dim]"
            )
