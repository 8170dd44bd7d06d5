"""``harmony-agent chat``: a conversation at the terminal, with line editing, history and slash commands.

Line editing and history come from the standard library's ``readline`` (when
it is present and the input is a terminal); the history file is
``~/.local/state/harmony-agent/chat_history`` (``$XDG_STATE_HOME`` honoured).
Ctrl-D (or ``/quit``) leaves. Ctrl-C works as in a shell: on a half-typed
line it clears the line; during a turn (the model writing, a tool running, an
approval prompt) it cancels that turn; either way the chat and the
conversation so far go on.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from harmony_agent import events as ev
from harmony_agent.cli.console import safe
from harmony_agent.cli.turns import TurnDriver
from harmony_agent.results import RunResult
from harmony_agent.session import SessionBusyError

HELP = """\
/reset        start the conversation over (the tools keep their state: python variables, browser pages)
/save FILE    write the conversation so far as a transcript (harmony-agent replay FILE prints it)
/tools        list the tools and what they do
/help         this list
/quit         leave (as Ctrl-D does)
Ctrl-C        clear the line, or cancel the turn that is running (the conversation so far stays)"""

PROMPT = "you> "
#: Seconds a new turn waits for a cancelled one to let go of the session (its tool may still be running).
BUSY_WAIT_S = 120.0


def history_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "harmony-agent" / "chat_history"


class LineEditor:
    """``input()`` with readline's editing and a history file, when stdin is a terminal."""

    def __init__(self) -> None:
        self.readline: Any = None
        if not sys.stdin.isatty():
            return
        try:
            import readline
        except ImportError:  # pragma: no cover - Python built without readline
            return
        self.readline = readline
        self.path = history_path()
        try:
            readline.read_history_file(self.path)
        except OSError:
            pass
        readline.set_history_length(1000)

    def read(self, prompt: str) -> str:
        return input(prompt)

    def save(self) -> None:
        if self.readline is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.readline.write_history_file(self.path)
        except OSError:
            pass


class Chat:
    """The loop of a chat: read a line, run a turn or a command, repeat."""

    def __init__(self, agent: Any, driver: TurnDriver, console: Console, err: Console) -> None:
        self.agent = agent
        self.driver = driver
        self.console = console
        self.err = err
        self.previous: RunResult | None = None
        self.events: list[ev.Event] = []

    def loop(self) -> None:
        editor = LineEditor()
        self.err.print("[dim]/help lists the commands; Ctrl-C cancels a turn; Ctrl-D leaves[/dim]")
        try:
            while True:
                try:
                    line = editor.read(PROMPT)
                except EOFError:
                    self.console.print()
                    return
                except KeyboardInterrupt:  # Ctrl-C on a half-typed line: drop it, ask again
                    self.console.print()
                    continue
                if not line.strip():
                    continue
                if line.lstrip().startswith("/"):
                    if not self.command(line.strip()):
                        return
                    continue
                self.turn(line)
        finally:
            editor.save()

    def turn(self, line: str) -> None:
        """One turn; Ctrl-C cancels it and the conversation goes on from the turn before."""
        before = self.agent.last_result
        try:
            self._turn_when_free(line)
        except KeyboardInterrupt:
            self.err.print("\n[yellow]turn cancelled[/yellow] [dim](the conversation goes on from before it)[/dim]")
            return
        result = self.agent.last_result
        if result is not None and result is not before:
            self.previous = result
            self.events.extend(e for e in result.events if not isinstance(e, ev.TokenDeltaEvent))

    def _turn_when_free(self, line: str) -> None:
        """Run the turn; if a cancelled turn is still winding down (a function tool cannot be stopped mid-call),
        say so and start this one as soon as the session is free (Ctrl-C stops waiting)."""
        deadline, told = time.monotonic() + BUSY_WAIT_S, False
        while True:
            try:
                self.driver.turn(line, self.previous)
                return
            except SessionBusyError:
                if time.monotonic() > deadline:
                    self.err.print("[red]the cancelled turn is still running[/red]; try again, or leave with Ctrl-D")
                    return
                if not told:
                    self.err.print("[dim]waiting for the cancelled turn's tool to finish…[/dim]")
                    told = True
                time.sleep(0.2)

    def command(self, line: str) -> bool:
        """Do a slash command; False means leave."""
        name, _, argument = line.partition(" ")
        argument = argument.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/help":
            self.console.print(safe(HELP))
        elif name == "/reset":
            self.previous = None
            self.console.print("[dim]the conversation starts over[/dim]")
        elif name == "/save":
            self.save(argument)
        elif name == "/tools":
            self.list_tools()
        else:
            self.err.print(f"[red]unknown command {safe(name)}[/red]: /help lists them")
        return True

    def save(self, argument: str) -> None:
        if not argument:
            self.err.print("[red]/save needs a file name[/red], e.g. /save runs/chat.jsonl")
            return
        path = Path(argument).expanduser()
        if path.is_dir():
            self.err.print(f"[red]{safe(str(path))} is a directory[/red]: name a file")
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8") as file:
                for event in self.events:
                    file.write(event.model_dump_json() + "\n")
        except OSError as exc:
            self.err.print(f"[red]cannot write {safe(str(path))}[/red]: {safe(exc.strerror or str(exc))}")
            return
        self.console.print(f"[dim]saved {len(self.events)} events to {safe(str(path))}[/dim]")

    def list_tools(self) -> None:
        """A line per tool for people (the model's own descriptions are long and written for the model)."""
        if not self.agent.tools:
            self.console.print("[dim]no tools (add some with --tools)[/dim]")
        for tool in self.agent.tools:
            for name, summary in tool_summaries(tool):
                self.console.print(f"[yellow]{safe(name)}[/yellow] {safe(summary)}")


#: What each built-in tool does, said for people.
BUILTIN_SUMMARIES = {
    "PythonTool": "runs Python code in a sandbox; files it saves are in /mnt/data",
    "BrowserTool": "searches and reads web pages in a headless Chromium",
    "ComputerTool": "sees and drives apps on a virtual display",
}


def first_sentence(text: str | None, limit: int = 80) -> str:
    """The first sentence of a description, on one line, cut to ``limit`` characters."""
    words = " ".join((text or "").split())
    sentence = words.split(". ", 1)[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def tool_summaries(tool: Any) -> list[tuple[str, str]]:
    """(name, what it does) for a tool: a built-in in one line with its actions, a function per function."""
    descriptions = tool.descriptions() or []
    summary = BUILTIN_SUMMARIES.get(type(tool).__name__)
    if summary is not None:
        name = "computer" if type(tool).__name__ == "ComputerTool" else tool.namespace
        actions = ", ".join(d.name for d in descriptions if d.name)
        return [(name, summary + (f" ({actions})" if actions else ""))]
    if not descriptions:
        return [(tool.namespace, first_sentence(tool.namespace_description))]
    return [
        (f"{tool.namespace}.{d.name}" if d.name else tool.namespace, first_sentence(d.description))
        for d in descriptions
    ]
