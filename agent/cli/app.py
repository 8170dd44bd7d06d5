"""The ``harmony-agent`` command: run, chat, replay, doctor, sandbox.

Options shared by ``run`` and ``chat`` live in :mod:`agent.cli_options`
(declared once, layered over the config file and task files there); turns are
driven by :mod:`agent.cli_turns`, the chat loop is :mod:`agent.cli_chat`, and
events are printed by :mod:`agent.console`.

Exit codes: 0 a final answer, 1 a budget or the model ended the run, 2 bad
input (an option, a file, a model spec, a tool that cannot start), 130
interrupted (Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import typer

from harmony_agent.cli import runs as cli_runs
from harmony_agent.cli.config import ConfigError, config_path, load_config
from harmony_agent.cli.console import (
    ConsoleView,
    JsonEventsView,
    QuietView,
    SilentView,
    json_safe,
    make_console,
    result_object,
    safe,
)
from harmony_agent.cli.options import (
    DEFAULTS,
    AllowOpt,
    AppOpt,
    DesktopSandboxOpt,
    HelpCommand,
    HelpGroup,
    HideAnalysisOpt,
    InstructionsOpt,
    JsonFlagGroup,
    JsonOpt,
    MaxStepsOpt,
    MaxTokensOpt,
    McpOpt,
    ModelOpt,
    OutputDirOpt,
    QuietOpt,
    ReasoningOpt,
    RunOptions,
    SandboxOpt,
    SearchOpt,
    ToolsOpt,
    TranscriptOpt,
    UsageError,
    VerboseOpt,
    YesOpt,
    build_agent,
    given_flags,
    read_task_file,
    resolve_options,
)
from harmony_agent.cli.turns import ApprovalPrompt, TurnDriver, interrupted
from harmony_agent.models import ModelError
from harmony_agent.sandboxes import SandboxError
from harmony_agent.sandboxes.images import DEFAULT_IMAGE
from harmony_agent.transcript import TranscriptError, read_transcript

EXIT_CODES = (
    "Exit codes: 0 final answer · 1 a budget or the model ended the run · 2 bad input · 130 interrupted (Ctrl-C)."
)

app = typer.Typer(
    cls=JsonFlagGroup,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=f"Run gpt-oss agents that speak harmony. Defaults come from {config_path()} (or $HARMONY_AGENT_CONFIG); "
    f"flags override it. {EXIT_CODES}",
)


def _version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("harmony-agent")
        except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree that was never installed
            version = "unknown (not installed)"
        print(f"harmony-agent {version}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run gpt-oss agents that speak harmony."""


def _fail(message: object) -> typer.Exit:
    """Print a one-line error (markup in it printed as is); the caller raises the returned Exit (code 2: bad input)."""
    text = " ".join(str(message).split("\n")) if isinstance(message, (UsageError, ConfigError)) else str(message)
    make_console(stderr=True).print(f"[red]error:[/red] {safe(text)}")
    return typer.Exit(2)


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """While a command runs, SIGTERM becomes SystemExit, so sandboxes are removed as on Ctrl-C.

    The handler that was there comes back afterwards: a program (or a test) that invokes the CLI in
    its own process keeps its own SIGTERM handling. Off the main thread Python cannot set handlers,
    so nothing changes there.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _task_input(task: str) -> tuple[str, dict[str, Any] | None]:
    """The task text, and a task file's settings when ``task`` names one; ``-`` reads the task from stdin."""
    if task == "-":
        text = sys.stdin.read().strip()
        if not text:
            raise UsageError("no task on stdin (run - reads the task from standard input)")
        return text, None
    path = Path(task)
    if task.endswith((".yaml", ".yml")) or path.is_dir():
        settings = read_task_file(path)
        return str(settings["task"]), settings
    return task, None


def _start(agent: Any, err: Any, show: bool) -> None:
    """Start the model and tools before the first step, so a missing sandbox fails at once, with its fix."""
    try:
        lines = asyncio.run(agent.start())
    except (SandboxError, ModelError) as exc:  # the caller closes the agent
        raise _fail(exc) from None
    if show:
        for line in lines:
            err.print(f"[dim]{safe(line)}[/dim]")


def _prepare(ctx: typer.Context, task_file: dict[str, Any] | None = None) -> RunOptions:
    try:
        return resolve_options(ctx, load_config(), task_file)
    except (UsageError, ConfigError) as exc:
        raise _fail(exc) from None


@app.command(cls=HelpCommand, epilog=EXIT_CODES)
def run(
    ctx: typer.Context,
    task: str = typer.Argument(
        ..., help="The task, a YAML task file (task, model, tools, ...), or - to read it from stdin."
    ),
    model: ModelOpt = DEFAULTS.model,
    tools: ToolsOpt = None,
    instructions: InstructionsOpt = None,
    reasoning: ReasoningOpt = DEFAULTS.reasoning,
    max_steps: MaxStepsOpt = DEFAULTS.max_steps,
    max_tokens: MaxTokensOpt = DEFAULTS.max_tokens,
    transcript: TranscriptOpt = None,
    output_dir: OutputDirOpt = None,
    yes: YesOpt = False,
    hide_analysis: HideAnalysisOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    json_mode: JsonOpt = None,
    sandbox: SandboxOpt = None,
    search: SearchOpt = None,
    allow: AllowOpt = None,
    apps: AppOpt = None,
    desktop_sandbox: DesktopSandboxOpt = None,
    mcp: McpOpt = None,
) -> None:
    """Run one task, printing the run as it happens (the answer and tool calls stream token by token).

    A task file with a 'tasks:' list, or a folder of task files, runs as a batch (see batch --help).
    """
    if task != "-" and cli_runs.is_batch(Path(task)):
        raise typer.Exit(cli_runs.run_batch_command([Path(task)], model=given_flags(ctx).get("model")))
    try:
        text, task_file = _task_input(task)
    except UsageError as exc:
        raise _fail(exc) from None
    options = _prepare(ctx, task_file)
    raise typer.Exit(_run(options, text, interactive=task != "-" and sys.stdin.isatty()))


def _run(options: RunOptions, task: str, *, interactive: bool) -> int:
    """Run one task with ``options``; returns the exit code."""
    console, err = make_console(), make_console(stderr=True)
    mode = options.output
    if mode == "human":
        view: Any = ConsoleView(
            console, show_analysis=not options.hide_analysis, verbose=options.verbose, status_console=err
        )
    else:
        view = {"quiet": QuietView, "events": JsonEventsView, "result": SilentView}[mode]()
    prompt = None if options.yes else ApprovalPrompt(err, show_call=mode != "human")
    driver = TurnDriver(view, prompt, interactive=interactive)
    try:
        agent = build_agent(options, approve=None if options.yes else driver.approve)
    except UsageError as exc:
        raise _fail(exc) from None
    driver.agent = agent
    transcript = str(options.transcript) if options.transcript else None
    try:
        with _sigterm_exits():
            _start(agent, err, show=mode == "human")
            end = driver.turn(task)
    except KeyboardInterrupt:
        interrupted(err)
        if mode == "result":
            print(json_safe(json.dumps(result_object(None, transcript))), flush=True)
        return 130
    except BrokenPipeError:  # the reader of our output went away (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        agent.close()
        driver.close()
    if mode == "result":
        print(json_safe(json.dumps(result_object(end, transcript), ensure_ascii=False)), flush=True)
    elif mode == "quiet" and end is not None and end.stop_reason != "final":
        err.print(f"[red]stop: {safe(end.stop_reason)}[/red] {safe(end.error or '')}")
    return 0 if end is not None and end.stop_reason == "final" else 1


@app.command(cls=HelpCommand, epilog=EXIT_CODES)
def chat(
    ctx: typer.Context,
    model: ModelOpt = DEFAULTS.model,
    tools: ToolsOpt = None,
    instructions: InstructionsOpt = None,
    reasoning: ReasoningOpt = DEFAULTS.reasoning,
    max_steps: MaxStepsOpt = DEFAULTS.max_steps,
    max_tokens: MaxTokensOpt = DEFAULTS.max_tokens,
    transcript: TranscriptOpt = None,
    output_dir: OutputDirOpt = None,
    yes: YesOpt = False,
    hide_analysis: HideAnalysisOpt = False,
    verbose: VerboseOpt = False,
    sandbox: SandboxOpt = None,
    search: SearchOpt = None,
    allow: AllowOpt = None,
    apps: AppOpt = None,
    desktop_sandbox: DesktopSandboxOpt = None,
    mcp: McpOpt = None,
) -> None:
    """Talk to the agent turn by turn: /reset, /save FILE, /tools, /help; Ctrl-C clears the line or cancels the turn, Ctrl-D leaves."""
    from harmony_agent.cli.chat import Chat

    options = _prepare(ctx)
    console, err = make_console(), make_console(stderr=True)
    view = ConsoleView(console, show_analysis=not options.hide_analysis, verbose=options.verbose, status_console=err)
    driver = TurnDriver(view, None if options.yes else ApprovalPrompt(err), interactive=sys.stdin.isatty())
    try:
        agent = build_agent(options, approve=None if options.yes else driver.approve)
    except UsageError as exc:
        raise _fail(exc) from None
    driver.agent = agent
    try:
        with _sigterm_exits():
            _start(agent, err, show=True)
            Chat(agent, driver, console, err).loop()
    except KeyboardInterrupt:
        interrupted(err)
        raise typer.Exit(130) from None
    finally:
        agent.close()
        driver.close()


@app.command(cls=HelpCommand)
def serve(
    model: str = typer.Option("openai/gpt-oss-20b", "--model", "-m", help="The model every conversation uses."),
    tools: list[str] | None = typer.Option(
        None, "--tools", "-t", help="Built-in tools clients may ask for: python, browser, computer."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(8080, "--port", help="Port to listen on."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="HARMONY_AGENT_API_KEY", help="Require this bearer token."
    ),
    max_steps: int = typer.Option(20, "--max-steps", help="Most model generations per request."),
    sandbox: str | None = typer.Option(
        None, "--sandbox", help="Where python runs: auto, docker, bubblewrap or unsandboxed."
    ),
    search: str | None = typer.Option(None, "--search", help="browser.search backend (see run --help)."),
    allow: list[str] | None = typer.Option(None, "--allow", help="Domains or addresses the browser may reach."),
    app_spec: list[str] | None = typer.Option(None, "--app", help="NAME=COMMAND the computer tool may launch."),
    approve: bool = typer.Option(
        False, "--approve", help="Each built-in tool call waits for approval on the chat page."
    ),
    allow_host: list[str] | None = typer.Option(
        None,
        "--allow-host",
        help="A host name requests may be addressed to, besides the bound address and localhost (repeatable).",
    ),
) -> None:
    """Serve the agent over OpenAI's Responses API (POST /v1/responses) and Chat Completions, with a chat page at /."""
    from harmony_agent.models import load_model
    from harmony_agent.server import ServerConfig
    from harmony_agent.server import serve as run_server
    from harmony_agent.toolbox import BUILTIN_TOOLS, ToolOptions, build_tools

    names = [part.strip() for value in tools or [] for part in value.split(",") if part.strip()]
    unknown = [name for name in names if name not in BUILTIN_TOOLS]
    if unknown:
        raise _fail(f"serve runs built-in tools only ({', '.join(sorted(BUILTIN_TOOLS))}); not {', '.join(unknown)}")
    if max_steps < 1:
        raise _fail("--max-steps must be at least 1")
    allowed = [part.strip() for value in allow or [] for part in value.split(",") if part.strip()]
    options = ToolOptions(sandbox=sandbox, search=search, allow=allowed, apps=app_spec or [])
    try:
        templates = dict(zip(names, build_tools(names, options)))
        loaded = load_model(model)
    except (ModelError, ValueError) as exc:
        raise _fail(exc) from None
    err = make_console(stderr=True)
    where = "this machine only" if host in ("127.0.0.1", "localhost", "::1") else "ANY machine that can reach it"
    err.print(
        f"serving {safe(loaded.name)} on http://{host}:{port} ({where}); tools: {', '.join(names) or 'none'}"
        f"{'; bearer token required' if api_key else ''}{'; tool calls wait for approval on the page' if approve else ''}"
    )
    err.print(f"[dim]the chat page is at http://{host}:{port}/ ; the API at http://{host}:{port}/v1[/dim]")
    hosts = [part.strip() for value in allow_host or [] for part in value.split(",") if part.strip()]
    config = ServerConfig(
        loaded, builtin_tools=templates, api_key=api_key, max_steps=max_steps, approve=approve, allow_hosts=hosts
    )
    run_server(config, host=host, port=port)


@app.command(cls=HelpCommand)
def replay(
    path: Path = typer.Argument(..., help="A transcript written with --transcript (or chat's /save)."),
    hide_analysis: HideAnalysisOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Print a transcript the way the run looked."""
    if not path.is_file():
        raise _fail(f"no transcript at {path}" + (" (it is a directory)" if path.is_dir() else ""))
    view = ConsoleView(make_console(), show_analysis=not hide_analysis, verbose=verbose)
    try:
        for event in read_transcript(path, strict=True):
            view.handle(event)
    except TranscriptError as exc:
        raise _fail(exc) from None
    except UnicodeDecodeError:
        raise _fail(f"{path} is not a text transcript") from None


@app.command(cls=HelpCommand)
def doctor(
    model: str | None = typer.Option(
        None,
        "--model",
        help="Hub id or folder whose files and memory need to check (default openai/gpt-oss-20b), "
        "or a GGUF: llamacpp:PATH_OR_REPO[?n_ctx=N] or PATH.gguf.",
    ),
) -> None:
    """Report what is installed and working, with a fix for each failure."""
    from harmony_agent.cli.doctor import report

    raise typer.Exit(report(model))


mcp_app = typer.Typer(cls=HelpGroup, no_args_is_help=True, help="Serve our tools to MCP clients.")
app.add_typer(mcp_app, name="mcp")


@mcp_app.command("serve", cls=HelpCommand)
def mcp_serve(
    tools: list[str] = typer.Option(
        ["python"], "--tools", "-t", help="python, browser, computer (comma-separated or repeated)."
    ),
    transport: str = typer.Option(
        "stdio", "--transport", help="stdio, http (streamable HTTP at /mcp) or sse (at /sse, for vLLM's tool server)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (http, sse)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (http, sse)."),
    sandbox: SandboxOpt = None,
    search: SearchOpt = None,
    allow: AllowOpt = None,
    apps: AppOpt = None,
    desktop_sandbox: DesktopSandboxOpt = None,
    browser_actions: bool = typer.Option(
        True,
        "--browser-actions/--no-browser-actions",
        help="List the browser's page actions beside search, open and find (off: exactly gpt-oss's trained browser).",
    ),
    idle_timeout: float = typer.Option(
        900.0, "--idle-timeout", help="Seconds an HTTP session may sit idle before its tools are released."
    ),
    max_sessions: int = typer.Option(32, "--max-sessions", help="Most MCP sessions (each with its own tools) at once."),
) -> None:
    """Serve python, browser and computer over MCP; one set of tools per MCP session."""
    from harmony_agent.server.mcp import kinds_from, serve
    from harmony_agent.toolbox import BUILTIN_TOOLS, ToolOptions

    names = [part.strip() for value in tools for part in value.split(",") if part.strip()]
    allowed = [part.strip() for value in allow or [] for part in value.split(",") if part.strip()]
    options = ToolOptions(
        sandbox=sandbox, search=search, allow=allowed, apps=apps or [], desktop_sandbox=desktop_sandbox
    )
    try:
        kinds = kinds_from(names)
        if not idle_timeout > 0 or max_sessions < 1:
            raise UsageError("--idle-timeout must be positive and --max-sessions at least 1")
        if transport not in ("stdio", "http", "sse"):
            raise UsageError(f"unknown transport {transport!r}: use stdio, http or sse")
        factories = {kind: (lambda kind=kind: BUILTIN_TOOLS[kind](options)) for kind in kinds}
        for factory in factories.values():
            factory()  # bad options fail here, with their message, before any client connects
    except (UsageError, ValueError) as exc:
        raise _fail(exc) from None
    if transport != "stdio":
        path = "mcp" if transport == "http" else "sse"
        make_console(stderr=True).print(
            f"[dim]serving {', '.join(kinds)} over MCP at http://{host}:{port}/{path}[/dim]"
        )
    try:
        with _sigterm_exits():
            serve(
                factories,
                transport,
                host,
                port,
                browser_actions=browser_actions,
                idle_seconds=idle_timeout,
                max_sessions=max_sessions,
            )
    except KeyboardInterrupt:
        pass


app.command("batch", cls=HelpCommand)(cli_runs.batch)
app.command("report", cls=HelpCommand)(cli_runs.report)
app.command("demo", cls=HelpCommand)(cli_runs.demo)

sandbox_app = typer.Typer(
    cls=HelpGroup, no_args_is_help=True, help="Build and tidy the python tool's sandbox image and containers."
)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("build", cls=HelpCommand)
def sandbox_build(
    offline: bool = typer.Option(
        False, "--offline", help="Build from Debian packages (debootstrap) instead of pulling python:3.12-slim."
    ),
    image: str = typer.Option(DEFAULT_IMAGE, "--image", help="Tag of the image to build."),
    mirror: str | None = typer.Option(
        None, "--mirror", help="Debian mirror for --offline (default: the one apt uses here)."
    ),
) -> None:
    """Build the code-interpreter image that the Docker sandbox runs."""
    from harmony_agent.sandboxes.docker import docker_client
    from harmony_agent.sandboxes.images import ImageBuildError, build_dockerfile, build_offline

    console = make_console()
    try:
        client = docker_client()
        with console.status(f"building {image}") as status:

            def progress(line: str) -> None:
                status.update(f"building {safe(image)}: {safe(line[:100])}")
                if not line.startswith("I: "):  # debootstrap's per-package chatter stays in the status line
                    console.print(f"[dim]{safe(line)}[/dim]")

            if offline:
                build_offline(client, image, mirror=mirror, progress=progress)
            else:
                build_dockerfile(client, image, progress=progress)
    except (SandboxError, ImageBuildError) as exc:
        raise _fail(exc) from None
    console.print(f"[green]built {safe(image)}[/green]")


@sandbox_app.command("clean", cls=HelpCommand)
def sandbox_clean() -> None:
    """Remove sandbox containers left behind by runs that were killed."""
    from harmony_agent.sandboxes.docker import docker_client, reap_orphans

    try:
        removed = reap_orphans(docker_client())
    except SandboxError as exc:
        raise _fail(exc) from None
    make_console().print(f"removed {len(removed)} orphaned sandbox container(s)")


def main() -> None:  # pragma: no cover - console entry
    app()
