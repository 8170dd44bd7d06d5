"""The run options every command shares: one definition, one resolution, one way to build the agent.

``run`` and ``chat`` (and later commands that run batches of task files) take
the same options. Each option is declared once here as an ``Annotated`` type
for typer, and once as a field of :class:`RunOptions`; a command lists the
options it takes and calls :func:`resolve_options`, which layers, from weakest
to strongest: built-in defaults, the config file (:mod:`agent.config`), a task
file's keys, and the flags actually given on the command line.

To add an option: declare ``XOpt`` below, add the field to ``RunOptions``
(and to ``TASK_FILE_KEYS`` / :class:`~agent.config.Config` if files may set
it), add ``x: XOpt = DEFAULTS.x`` to the commands that take it, and use
``options.x`` where the agent or its tools are built.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from pydantic import BaseModel, ConfigDict

from harmony_agent.cli.config import Config
from harmony_agent.imports import preload_policy
from harmony_agent.runs.tasks import TaskFileError, expand_variables, relative_to_file
from harmony_agent.toolbox import BUILTIN_TOOLS, ToolOptions, ToolSpecError, build_tools
from harmony_agent.tools.base import Tool
from harmony_agent.yaml_files import YamlFileError, read_yaml

if TYPE_CHECKING:
    # Typer vendors click as typer._click: its commands' hooks take that Context (typer.Context's base), so
    # overrides must accept it too.
    from typer._click import Context as ClickContext

Reasoning = Literal["low", "medium", "high"]
OutputMode = Literal["human", "quiet", "result", "events"]


class UsageError(Exception):
    """Bad input from the person at the command line: printed on one line, exit code 2."""


class RunOptions(BaseModel):
    """Everything that shapes a run, after defaults, config file, task file and flags are layered."""

    model_config = ConfigDict(extra="forbid")

    model: str = "openai/gpt-oss-20b"
    tools: list[str] = []
    instructions: str | None = None
    reasoning: Reasoning = "medium"
    max_steps: int = 20
    max_tokens: int | None = None  # None: by reasoning effort (Agent's "auto")
    transcript: Path | None = None
    output_dir: Path | None = None
    yes: bool = False
    hide_analysis: bool = False
    verbose: bool = False
    quiet: bool = False
    json_mode: Literal["result", "events"] | None = None
    sandbox: str | None = None
    search: str | None = None
    allow: list[str] = []
    apps: list[str] = []
    desktop_sandbox: Literal["none", "bubblewrap", "docker"] | None = None
    mcp: list[Any] = []
    #: Where ``module:function`` names (tools, a policy) are looked up first: a task file's folder.
    folder: Path | None = None

    @property
    def output(self) -> OutputMode:
        """How the run is printed: for people, only the answer, one JSON object, or JSON lines of events."""
        if self.json_mode is not None:
            return self.json_mode
        return "quiet" if self.quiet else "human"


DEFAULTS = RunOptions()

#: Keys a YAML task file may hold (besides ``task``).
TASK_FILE_KEYS = {
    "task",
    "model",
    "tools",
    "instructions",
    "reasoning",
    "max_steps",
    "max_tokens",
    "sandbox",
    "search",
    "allow",
    "apps",
    "desktop_sandbox",
    "mcp",
}

# -- the options, declared once -------------------------------------------------------------------------------------

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="gpt-oss:20b / gpt-oss:120b (Ollama here), 20b / 120b (hub ids), http(s)://server[#name], "
        "ollama+http://server#name, openai-chat+https://host/v1#name or openai-responses+… (hosted gpt-oss, no GPU), "
        "llamacpp:FILE.gguf, transformers:ID_OR_PATH, scripted:FILE, policy:module:fn, or a hub id or folder.",
    ),
]
InstructionsOpt = Annotated[str | None, typer.Option("--instructions", "-i", help="Developer instructions.")]
ReasoningOpt = Annotated[Reasoning, typer.Option("--reasoning", "-r", help="Reasoning effort.")]
MaxStepsOpt = Annotated[int, typer.Option("--max-steps", help="Most model generations in a turn (at least 1).")]
MaxTokensOpt = Annotated[
    int | None,
    typer.Option(
        "--max-tokens",
        show_default=False,
        help="Most tokens per generation (at least 1); by default 8192, 16384 or 32768 for low, medium or high "
        "reasoning, within the context window.",
    ),
]
TranscriptOpt = Annotated[Path | None, typer.Option("--transcript", help="Append the run's events to this JSONL file.")]
OutputDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Folder where the files the tools make (the python sandbox's /mnt/data) are copied after each turn "
        "(default: runs/<run id>/ here).",
    ),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Approve every tool call without asking.")]
HideAnalysisOpt = Annotated[bool, typer.Option("--hide-analysis", help="Do not print the model's analysis.")]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Print long tool results whole (they are shortened on screen).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final answer.")]
JsonOpt = Annotated[
    str | None,
    typer.Option(
        "--json",
        metavar="[=events]",
        show_default=False,
        help="Print one JSON object at the end (final_text, stop_reason, steps, usage, error, transcript); "
        "--json=events prints every event as a JSON line instead.",
    ),
]
SandboxOpt = Annotated[
    str | None,
    typer.Option(
        "--sandbox",
        metavar="auto|docker|bubblewrap|unsandboxed",
        help="Where python runs (auto: Docker, else bubblewrap).",
    ),
]
SearchOpt = Annotated[
    str | None,
    typer.Option(
        "--search", help="browser.search backend: duckduckgo, searxng:URL, exa, you, tavily, local:FOLDER[@BASE_URL]."
    ),
]
AllowOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allow",
        help="Let the browser reach only these domains; IPs/CIDRs (e.g. 127.0.0.1, or 127.0.0.1:8000 for "
        "one port) are allowed although private.",
        show_default=False,
    ),
]
AppOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--app",
        help="NAME=COMMAND the computer tool may launch (repeatable; xterm is allowed by default).",
        show_default=False,
    ),
]
DesktopSandboxOpt = Annotated[
    str | None,
    typer.Option(
        "--desktop-sandbox",
        metavar="none|bubblewrap|docker",
        help="How the computer tool's display runs apps: none (on the host), bubblewrap (each app in its own "
        "namespaces) or docker (the whole desktop in a container).",
        show_default=False,
    ),
]
McpOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--mcp",
        help="An MCP server's tools: stdio:COMMAND ARGS, http(s)://HOST:PORT/mcp, sse:URL, or NAMESPACE=SPEC "
        "(repeatable).",
        show_default=False,
    ),
]


#: Commands whose ``--json`` may stand alone or take ``=events``.
JSON_COMMANDS = {"run"}


def _plain_metavars(params: list[Any], ctx: ClickContext) -> list[Any]:
    """Help shows ``--model MODEL``, ``low|medium|high`` and a bare ``--yes``, not ``<str>`` and ``<bool>``."""
    for param in params:
        if isinstance(param, typer.core.TyperArgument):
            # An argument's name is its label already; Typer would add its type as "<str>" beside it.
            # Typer has no setting for this: replacing the method on this one instance is the point.
            param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
            continue
        if param.metavar is not None:
            continue
        label = str(param.display_type_rich(ctx) or "")
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
        elif "|" in label:  # choices: the values themselves
            param.metavar = label.strip("<>")
        else:
            param.metavar = (param.name or "value").upper()
    return params


class HelpCommand(typer.core.TyperCommand):
    """A command whose help names values plainly (see :func:`_plain_metavars`)."""

    def get_params(self, ctx: ClickContext) -> list[Any]:
        return _plain_metavars(super().get_params(ctx), ctx)


class HelpGroup(typer.core.TyperGroup):
    """A group whose own help names values plainly (its commands take ``cls=HelpCommand``)."""

    def get_params(self, ctx: ClickContext) -> list[Any]:
        return _plain_metavars(super().get_params(ctx), ctx)


class JsonFlagGroup(HelpGroup):
    """Lets ``--json`` stand alone or take ``=events`` (click options cannot have an optional value)."""

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        command = next((arg for arg in args if not arg.startswith("-")), None)
        if command in JSON_COMMANDS:
            end = args.index("--") if "--" in args else len(args)
            args = ["--json=result" if i < end and arg == "--json" else arg for i, arg in enumerate(args)]
        return super().parse_args(ctx, args)


# -- layering ----------------------------------------------------------------------------------------------------------


def _split(values: Any) -> list[str]:
    """Comma-separated or repeated values (or a YAML list) as one flat list."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [part.strip() for value in values for part in str(value).split(",") if part.strip()]


def given_flags(ctx: typer.Context) -> dict[str, Any]:
    """The options the person actually typed (or set through the environment), not their defaults."""
    given = {}
    for name, value in ctx.params.items():
        source = ctx.get_parameter_source(name)  # typer vendors click: compare by name, not by class
        if getattr(source, "name", None) in ("COMMANDLINE", "ENVIRONMENT"):
            given[name] = value
    return given


def resolve_options(ctx: typer.Context, config: Config, task_file: dict[str, Any] | None = None) -> RunOptions:
    """Defaults < config file < task file < flags; each value checked, with a one-line error."""
    layered: dict[str, Any] = {}
    from_config = config.model_dump(exclude_none=True, exclude={"approve"})
    layered.update({k: v for k, v in from_config.items() if v not in ([], False)})
    if config.approve == "always":
        layered["yes"] = True
    layered.update({k: v for k, v in (task_file or {}).items() if k != "task"})
    flags = given_flags(ctx)
    layered.update({k: v for k, v in flags.items() if k in RunOptions.model_fields})
    for key in ("tools", "allow"):
        layered[key] = _split(layered.get(key))
    for key in ("apps", "mcp"):
        if isinstance(layered.get(key), (str, dict)):
            layered[key] = [layered[key]]
    mode = layered.get("json_mode")
    if mode is not None and mode not in ("result", "events"):
        raise UsageError(f"--json takes no value or =events, got {mode!r} (write --json=events, with '=')")
    for key in ("max_steps", "max_tokens"):
        value = layered.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UsageError(f"--{key.replace('_', '-')} must be a whole number of at least 1, got {value!r}")
    try:
        options = RunOptions.model_validate(layered)
    except ValueError as exc:
        errors: list[Any] = getattr(exc, "errors", lambda: [])()
        first = errors[0] if errors else None
        raise UsageError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else str(exc)) from None
    _check_paths(options)
    return options


def _check_paths(options: RunOptions) -> None:
    """Refuse paths that would fail mid-run (or silently fall back) before anything starts."""
    if options.transcript is not None:
        path = options.transcript
        if path.is_dir():
            raise UsageError(f"transcript {path} is a directory; name a file such as {path / 'run.jsonl'}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise UsageError(f"cannot write transcript {path}: {exc.strerror or exc}") from None
    if options.search and options.search.startswith("local:"):
        folder = options.search[len("local:") :].partition("@")[0]
        if not folder or not Path(folder).is_dir():
            raise UsageError(f"--search local: folder {folder!r} does not exist or is not a folder")


def read_task_file(path: Path) -> dict[str, Any]:
    """A YAML task file's keys, checked (unknown keys, bad budgets) with errors that name the file."""
    if path.is_dir():
        raise UsageError(f"task file {path} is a directory, not a YAML file")
    if not path.is_file():
        raise UsageError(f"task file {path} not found")
    try:
        data = read_yaml(path, what="task file")
    except YamlFileError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    if not isinstance(data, dict) or "task" not in data:
        raise UsageError(f"{path} must be a mapping with at least a 'task' key")
    unknown = set(data) - TASK_FILE_KEYS
    if unknown:
        raise UsageError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(TASK_FILE_KEYS)}")
    for key in ("max_steps", "max_tokens"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UsageError(f"{path}: {key} must be a positive whole number, got {value!r}")
    try:
        data = expand_variables(data, path)
    except TaskFileError as exc:
        raise UsageError(str(exc)) from None
    # Paths and module:function names in a task file are relative to the file, whatever the current folder.
    return {**relative_to_file(data, path.parent), "folder": path.parent.resolve()}


# -- tools ---------------------------------------------------------------------------------------------------------------

ToolsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tools",
        "-t",
        show_default=False,
        help=f"Tools: built-in names ({', '.join(BUILTIN_TOOLS)}) or module:function; comma-separated or repeated.",
    ),
]


def load_tools(specs: list[str], options: RunOptions | None = None) -> list[Tool]:
    """Tools from names (built-ins) or ``module:attribute``, and the MCP servers of the options (see agent.toolbox)."""
    options = options or DEFAULTS
    tool_options = ToolOptions(
        sandbox=options.sandbox,
        search=options.search,
        allow=options.allow,
        apps=options.apps,
        desktop_sandbox=options.desktop_sandbox,
        mcp=options.mcp,
        screenshots=options.transcript.with_suffix(".screenshots") if options.transcript else None,
    )
    try:
        return build_tools(specs, tool_options, search_path=[options.folder, Path.cwd()])
    except ToolSpecError as exc:
        raise UsageError(str(exc)) from None


def build_agent(options: RunOptions, approve: Any = None):
    """The :class:`~agent.Agent` the options describe; bad specs raise :class:`UsageError`."""
    from harmony_agent.agent import Agent
    from harmony_agent.models import ModelError, load_model

    try:
        tools = load_tools(options.tools, options)
        preload_policy(options.model, [options.folder, Path.cwd()])
        return Agent(
            load_model(options.model),
            tools=tools,
            instructions=options.instructions,
            reasoning=options.reasoning,
            max_steps=options.max_steps,
            max_tokens=options.max_tokens or "auto",
            transcript=options.transcript,
            approve=approve,
            output_dir=options.output_dir,
        )
    except (ModelError, ValueError) as exc:
        raise UsageError(str(exc)) from None
