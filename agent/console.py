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

    def _close_stream(self) -> None:
        if self._open_channel is not None:
            self.console.print()
            self._open_channel = None

    def handle(self, event: ev.Event) -> None:
        c = self.console
        if isinstance(event, ev.TokenDeltaEvent):
            if event.channel == "final" or event.recipient:
                return  # the final answer and tool calls are printed whole by their own events
            if event.channel == "analysis" and not self.show_analysis:
                return
            if self._open_channel != event.channel:
                self._close_stream()
                label = event.channel or "message"
                c.print(f"[dim]{label}:[/dim] ", end="")
                self._open_channel = event.channel
            style = "dim" if event.channel == "analysis" else ""
            c.print(escape(event.text), style=style, end="")
            return
        self._close_stream()
        if isinstance(event, ev.RunStartEvent):
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
