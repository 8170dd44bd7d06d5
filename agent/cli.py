"""The ``harmony-agent`` command: run, chat, replay, doctor."""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import signal
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any, Optional

import typer
import yaml
from rich.console import Console
from rich.prompt import Confirm
from rich.table import Table

from sandboxes import SandboxError
from tools.base import Tool, ToolCall, ToolError
from tools.functions import function_tool
from sandboxes.images import DEFAULT_IMAGE
from tools.python import PythonTool

from .console import ConsoleView
from .agent import Agent
from .loop import RunResult
from .models import ModelError, load_model
from .transcript import TranscriptError, read_transcript

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Run gpt-oss agents that speak harmony.")
console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

#: Built-in tools by name; each factory gets the run's tool options (such as ``sandbox``).
def _screenshots(options: dict[str, Any]) -> Path | None:
    """Tools that take screenshots keep them beside the transcript: runs/x.jsonl -> runs/x.screenshots/."""
    transcript = options.get("transcript")
    return Path(transcript).with_suffix(".screenshots") if transcript else None


def _browser_tool(options: dict[str, Any]) -> Tool:
    from tools.browser import BrowserTool, backend_from_spec

    addresses, domains = [], []
    for entry in options.get("allow") or []:
        try:
            ipaddress.ip_network(entry, strict=False)
            addresses.append(entry)
        except ValueError:
            domains.append(entry)
    try:
        backend = backend_from_spec(options["search"]) if options.get("search") else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return BrowserTool(backend, allow_domains=domains, allow_addresses=addresses, screenshots=_screenshots(options))


def _computer_tool(options: dict[str, Any]) -> Tool:
    import shlex
    import shutil

    from tools.computer import ComputerTool

    apps = {"xterm": ["xterm"]} if shutil.which("xterm") else {}
    for entry in options.get("apps") or []:
        name, _, command = entry.partition("=")
        if not name or not command:
            raise UsageError(f"--app takes NAME=COMMAND, got {entry!r}")
        apps[name.strip()] = shlex.split(command)
    return ComputerTool(apps=apps, screenshots=_screenshots(options))


BUILTIN_TOOLS: dict[str, Callable[[dict[str, Any]], Tool]] = {
    "python": lambda options: PythonTool(sandbox=options.get("sandbox")),
    "browser": _browser_tool,
    "computer": _computer_tool,
}

TASK_FILE_KEYS = {"task", "model", "tools", "instructions", "reasoning", "max_steps", "max_tokens", "sandbox", "search", "allow",
                  "apps", "mcp"}


class UsageError(Exception):
    pass


def _fail(message: object) -> typer.Exit:
    """Print a clear error; the caller raises the returned Exit (code 2: bad input)."""
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def load_tools(specs: list[str], options: dict[str, Any] | None = None) -> list[Tool]:
    """Tools from names (built-ins) or ``module:attribute`` (a Tool, a function, or a list of them)."""
    tools: list[Tool] = mcp_tools(options.get("mcp") or []) if options else []
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # let module:function name the user's own modules, as python -m does
    for spec in (s.strip() for s in specs):
        if not spec:
            continue
        if spec in BUILTIN_TOOLS:
            tools.append(BUILTIN_TOOLS[spec](options or {}))
            continue
        module_name, _, attr = spec.rpartition(":")
        if not module_name:
            known = ", ".join(sorted(BUILTIN_TOOLS)) or "none yet"
            raise UsageError(f"unknown tool {spec!r}: name a built-in tool ({known}) or module:function")
        try:
            value = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UsageError(f"cannot import tool {spec!r}: {exc}") from exc
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, Tool):
                tools.append(item)
            elif callable(item):
                tools.append(function_tool(item))
            else:
                raise UsageError(f"{spec!r} is neither a Tool nor a function")
    return tools


def mcp_tools(specs: list[Any]) -> list[Tool]:
    """MCPTools from ``--mcp`` values or a task file's ``mcp:`` entries: ``SPEC``, ``NAMESPACE=SPEC``, or a mapping
    with ``server`` (the spec) and optional ``namespace``."""
    import re

    from tools.mcp import MCPTools

    tools: list[Tool] = []
    for entry in specs:
        namespace = None
        if isinstance(entry, dict):
            spec, namespace = entry.get("server"), entry.get("namespace")
            if not isinstance(spec, str):
                raise UsageError(f"an mcp entry needs a 'server' spec string, got {entry!r}")
        elif isinstance(entry, str):
            spec = entry
            named = re.match(r"^([A-Za-z_][A-Za-z0-9_-]*)=(.+)$", entry.strip())
            if named and not entry.strip().startswith(("stdio:", "http:", "https:", "sse:")):
                namespace, spec = named.group(1), named.group(2)
        else:
            raise UsageError(f"an mcp entry must be a spec string or a mapping, got {entry!r}")
        try:
            tool = MCPTools(spec, namespace)
            tool.descriptions()  # lists the server's tools now: a server that cannot start is a clear error here
        except (ValueError, ToolError) as exc:
            raise UsageError(str(exc)) from None
        tools.append(tool)
    return tools


def _read_task_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or "task" not in data:
        raise UsageError(f"{path} must be a mapping with at least a 'task' key")
    unknown = set(data) - TASK_FILE_KEYS
    if unknown:
        raise UsageError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(TASK_FILE_KEYS)}")
    for key in ("max_steps", "max_tokens"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UsageError(f"{path}: {key} must be a positive whole number, got {value!r}")
    return data


def _approver(assume_yes: bool):
    if assume_yes:
        return None

    async def ask(call: ToolCall) -> bool | str:
        if not sys.stdin.isatty():
            return "not approved: no terminal to ask on (pass --yes to approve tool calls)"
        question = f"Allow [yellow]{call.recipient}[/yellow] {call.content[:300]!r}?"
        allowed = await asyncio.to_thread(Confirm.ask, question, console=console, default=True)
        return True if allowed else "the user declined this call"

    return ask


def _build_agent(model: str, tools: list[str], instructions: Optional[str], reasoning: str, max_steps: int,
                 max_tokens: int, transcript: Optional[Path], assume_yes: bool, options: Optional[dict[str, Any]] = None) -> Agent:
    options = {**(options or {}), "transcript": transcript}
    try:
        loaded_tools = load_tools(tools, options)
        return Agent(
            load_model(model), tools=loaded_tools, instructions=instructions, reasoning=reasoning,
            max_steps=max_steps, max_tokens=max_tokens, transcript=transcript, approve=_approver(assume_yes),
        )
    except (UsageError, ModelError, ValueError) as exc:
        raise _fail(exc) from None


async def _start_tools(agent: Agent) -> None:
    """Start the model and tools before the first step, so a missing sandbox fails the run at once, with its fix."""
    try:
        lines = await agent.start()
    except (SandboxError, ModelError) as exc:
        await agent.aclose()
        raise _fail(exc) from None
    for line in lines:
        err.print(f"[dim]{line}[/dim]")


def _exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so sandboxes are removed by their exit handlers as on Ctrl-C."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, list) else [value]


def _split_tools(values: Optional[list[str]]) -> list[str]:
    return [part for value in values or [] for part in value.split(",") if part.strip()]


@app.command()
def run(
    task: str = typer.Argument(..., help="The task, or a YAML task file (task, model, tools, instructions, ...)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="scripted:FILE, http(s)://server, transformers:ID, or a hub id."),
    tools: Optional[list[str]] = typer.Option(None, "--tools", "-t", help="Tools: built-in names or module:function (comma-separated or repeated)."),
    instructions: Optional[str] = typer.Option(None, "--instructions", "-i", help="Developer instructions."),
    reasoning: Optional[str] = typer.Option(None, "--reasoning", "-r", help="low, medium or high."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Most model generations in the run."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Most tokens per generation."),
    transcript: Optional[Path] = typer.Option(None, "--transcript", help="Append JSONL events here."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Approve every tool call without asking."),
    hide_analysis: bool = typer.Option(False, "--hide-analysis", help="Do not print the model's analysis."),
    sandbox: Optional[str] = typer.Option(None, "--sandbox", help="Where python runs: auto, docker, bubblewrap or unsandboxed."),
    search: Optional[str] = typer.Option(None, "--search", help="browser.search backend: duckduckgo, searxng:URL, exa, you, tavily, local:FOLDER[@BASE_URL]."),
    allow: Optional[list[str]] = typer.Option(None, "--allow", help="Let the browser reach only these domains; IPs/CIDRs (e.g. 127.0.0.1) are allowed although private."),
    app: Optional[list[str]] = typer.Option(None, "--app", help="NAME=COMMAND the computer tool may launch (repeatable; xterm is allowed by default)."),
    mcp: Optional[list[str]] = typer.Option(None, "--mcp", help="An MCP server's tools: stdio:COMMAND ARGS, http(s)://HOST:PORT/mcp, or NAMESPACE=SPEC (repeatable)."),
) -> None:
    """Run one task and print the run as it happens."""
    settings: dict[str, Any] = {}
    task_path = Path(task)
    if task.endswith((".yaml", ".yml")):
        if not task_path.is_file():
            raise _fail(f"task file {task} not found")
        try:
            settings = _read_task_file(task_path)
        except UsageError as exc:
            raise _fail(exc) from None
    file_tools = settings.get("tools") or []
    if isinstance(file_tools, str):
        file_tools = [file_tools]
    agent = _build_agent(
        model or settings.get("model") or "openai/gpt-oss-20b",
        _split_tools(tools) or [str(t) for t in file_tools],
        instructions or settings.get("instructions"),
        reasoning or settings.get("reasoning") or "medium",
        max_steps or int(settings.get("max_steps") or 20),
        max_tokens or int(settings.get("max_tokens") or 4096),
        transcript, yes,
        {"sandbox": sandbox or settings.get("sandbox"), "search": search or settings.get("search"),
         "allow": _split_tools(allow) or list(settings.get("allow") or []), "apps": app or list(settings.get("apps") or []),
         "mcp": mcp or _as_list(settings.get("mcp"))},
    )
    view = ConsoleView(console, show_analysis=not hide_analysis)
    _exit_cleanly_on_sigterm()

    async def main() -> str:
        await _start_tools(agent)
        try:
            async for event in agent.stream(str(settings.get("task", task))):
                view.handle(event)
                if event.type == "run_end":
                    return event.stop_reason
            return "unknown"
        finally:
            await agent.aclose()

    try:
        stop_reason = asyncio.run(main())
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(130) from None
    raise typer.Exit(0 if stop_reason == "final" else 1)


@app.command()
def chat(
    model: str = typer.Option("openai/gpt-oss-20b", "--model", "-m"),
    tools: Optional[list[str]] = typer.Option(None, "--tools", "-t"),
    instructions: Optional[str] = typer.Option(None, "--instructions", "-i"),
    reasoning: str = typer.Option("medium", "--reasoning", "-r"),
    max_steps: int = typer.Option(20, "--max-steps"),
    max_tokens: int = typer.Option(4096, "--max-tokens"),
    transcript: Optional[Path] = typer.Option(None, "--transcript"),
    yes: bool = typer.Option(False, "--yes", "-y"),
    sandbox: Optional[str] = typer.Option(None, "--sandbox", help="Where python runs: auto, docker, bubblewrap or unsandboxed."),
    search: Optional[str] = typer.Option(None, "--search", help="browser.search backend (see run --help)."),
    allow: Optional[list[str]] = typer.Option(None, "--allow", help="Domains or addresses the browser may reach."),
    app: Optional[list[str]] = typer.Option(None, "--app", help="NAME=COMMAND the computer tool may launch."),
    mcp: Optional[list[str]] = typer.Option(None, "--mcp", help="An MCP server's tools (see run --help; repeatable)."),
) -> None:
    """Talk to the agent turn by turn (empty line or Ctrl-D to quit)."""
    agent = _build_agent(model, _split_tools(tools), instructions, reasoning, max_steps, max_tokens, transcript, yes,
                         {"sandbox": sandbox, "search": search, "allow": _split_tools(allow), "apps": app or [], "mcp": mcp or []})
    view = ConsoleView(console)
    _exit_cleanly_on_sigterm()

    async def main() -> None:
        await _start_tools(agent)
        previous: RunResult | None = None
        try:
            while True:
                try:
                    line = await asyncio.to_thread(console.input, "[bold cyan]you>[/bold cyan] ")
                except EOFError:
                    return
                if not line.strip():
                    return
                async for event in agent.stream(line, previous=previous):
                    view.handle(event)
                previous = agent.last_result
        finally:
            await agent.aclose()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


@app.command()
def replay(path: Path = typer.Argument(..., help="A transcript written with --transcript."),
           hide_analysis: bool = typer.Option(False, "--hide-analysis")) -> None:
    """Print a transcript the way the run looked."""
    if not path.is_file():
        raise _fail(f"no transcript at {path}")
    view = ConsoleView(console, show_analysis=not hide_analysis)
    try:
        for event in read_transcript(path, strict=True):
            view.handle(event)
    except TranscriptError as exc:
        raise _fail(exc) from None
    except UnicodeDecodeError:
        raise _fail(f"{path} is not a text transcript") from None


@app.command()
def doctor() -> None:
    """Report what is installed and working, with a fix for each failure."""
    from .doctor import run_checks

    table = Table(title="harmony-agent doctor", show_lines=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail")
    table.add_column("fix")
    failed_required = False
    for check in run_checks():
        status = "[green]ok[/green]" if check.ok else ("[red]FAIL[/red]" if check.required else "[yellow]missing[/yellow]")
        failed_required |= check.required and not check.ok
        table.add_row(check.name, status, check.detail, "" if check.ok else check.hint)
    console.print(table)
    raise typer.Exit(1 if failed_required else 0)


sandbox_app = typer.Typer(no_args_is_help=True, help="Build and tidy the python tool's sandbox image and containers.")
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("build")
def sandbox_build(
    offline: bool = typer.Option(False, "--offline", help="Build from Debian packages (debootstrap) instead of pulling python:3.12-slim."),
    image: str = typer.Option(DEFAULT_IMAGE, "--image", help="Tag of the image to build."),
    mirror: Optional[str] = typer.Option(None, "--mirror", help="Debian mirror for --offline (default: the one apt uses here)."),
) -> None:
    """Build the code-interpreter image that the Docker sandbox runs."""
    from sandboxes.docker import docker_client
    from sandboxes.images import ImageBuildError, build_dockerfile, build_offline

    try:
        client = docker_client()
        with console.status(f"building {image}") as status:
            def progress(line: str) -> None:
                status.update(f"building {image}: {line[:100]}")
                if not line.startswith("I: "):  # debootstrap's per-package chatter stays in the status line
                    console.print(f"[dim]{line}[/dim]")

            if offline:
                build_offline(client, image, mirror=mirror, progress=progress)
            else:
                build_dockerfile(client, image, progress=progress)
    except (SandboxError, ImageBuildError) as exc:
        raise _fail(exc) from None
    console.print(f"[green]built {image}[/green]")


@sandbox_app.command("clean")
def sandbox_clean() -> None:
    """Remove sandbox containers left behind by runs that were killed."""
    from sandboxes.docker import docker_client, reap_orphans

    try:
        removed = reap_orphans(docker_client())
    except SandboxError as exc:
        raise _fail(exc) from None
    console.print(f"removed {len(removed)} orphaned sandbox container(s)")


mcp_app = typer.Typer(no_args_is_help=True, help="Serve our tools to MCP clients.")
app.add_typer(mcp_app, name="mcp")


@mcp_app.command("serve")
def mcp_serve(
    tools: list[str] = typer.Option(["python"], "--tools", "-t", help="python, browser, computer (comma-separated or repeated)."),
    transport: str = typer.Option("stdio", "--transport", help="stdio, http (streamable HTTP at /mcp) or sse (at /sse, for vLLM's tool server)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (http)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (http)."),
    sandbox: Optional[str] = typer.Option(None, "--sandbox", help="Where python runs: auto, docker, bubblewrap or unsandboxed."),
    search: Optional[str] = typer.Option(None, "--search", help="browser.search backend (see run --help)."),
    allow: Optional[list[str]] = typer.Option(None, "--allow", help="Domains or addresses the browser may reach."),
    app_: Optional[list[str]] = typer.Option(None, "--app", help="NAME=COMMAND the computer tool may launch."),
    browser_actions: bool = typer.Option(True, "--browser-actions/--no-browser-actions", help="List the browser's page actions beside search, open and find (off: exactly gpt-oss's trained browser)."),
) -> None:
    """Serve python, browser and computer over MCP; one set of tools per MCP session."""
    from .mcp_server import kinds_from, serve

    options = {"sandbox": sandbox, "search": search, "allow": _split_tools(allow), "apps": app_ or []}
    try:
        kinds = kinds_from(_split_tools(tools))
        if transport not in ("stdio", "http", "sse"):
            raise UsageError(f"unknown transport {transport!r}: use stdio, http or sse")
        factories = {kind: (lambda kind=kind: BUILTIN_TOOLS[kind](options)) for kind in kinds}
        for factory in factories.values():
            factory()  # bad options fail here, with their message, before any client connects
    except (UsageError, ValueError) as exc:
        raise _fail(exc) from None
    _exit_cleanly_on_sigterm()
    if transport != "stdio":
        path = "mcp" if transport == "http" else "sse"
        err.print(f"[dim]serving {', '.join(kinds)} over MCP at http://{host}:{port}/{path}[/dim]")
    try:
        serve(factories, transport, host, port, browser_actions=browser_actions)
    except KeyboardInterrupt:
        pass


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
