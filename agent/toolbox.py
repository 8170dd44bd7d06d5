"""Tools from names: what a task file, the command line, a batch or a Ray worker asks for.

``build_tools(["python", "browser", "mymodule:lookup"], ToolOptions(...))`` gives the tool objects
(``harmony_agent.runs.factory`` builds a whole agent for a task from them). This is the one place
where names become tools, so every entry point offers the same ones with the same options.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmony_agent.imports import import_beside
from harmony_agent.tools.base import Tool
from harmony_agent.tools.functions import function_tool


class ToolSpecError(ValueError):
    """A tool name or option that cannot be turned into a tool."""


@dataclass
class ToolOptions:
    """Options of the built-in tools: the python sandbox, the browser's search and reach, the desktop's apps."""

    sandbox: str | None = None
    search: str | None = None
    allow: list[str] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)
    apps: list[str] = field(default_factory=list)
    #: MCP servers: ``SPEC``, ``NAMESPACE=SPEC``, or ``{"server": SPEC, "namespace": NAME}``.
    mcp: list[Any] = field(default_factory=list)
    #: How the computer tool's display runs its apps: none (on the host), bubblewrap (each app in its own
    #: namespaces) or docker (the whole desktop in a container); None: none.
    desktop_sandbox: str | None = None
    #: Screenshots go here (a transcript's ``x.screenshots/`` folder), or nowhere.
    screenshots: Path | None = None


def _python(options: ToolOptions) -> Tool:
    from harmony_agent.tools.python import PythonTool

    return PythonTool(sandbox=options.sandbox)


def _browser(options: ToolOptions) -> Tool:
    from harmony_agent.tools.browser import BrowserTool, backend_from_spec
    from harmony_agent.tools.browser.policy import split_allow_list

    addresses, domains = split_allow_list(options.allow)
    backend = backend_from_spec(options.search) if options.search else None
    return BrowserTool(
        backend,
        allow_domains=domains,
        deny_domains=list(options.deny),
        allow_addresses=addresses,
        screenshots=options.screenshots,
    )


def _computer(options: ToolOptions) -> Tool:
    from harmony_agent.sandboxes.base import SandboxError
    from harmony_agent.sandboxes.display import VirtualDisplay
    from harmony_agent.tools.computer import ComputerTool

    apps = {"xterm": ["xterm"]} if shutil.which("xterm") else {}
    for entry in options.apps:
        name, _, command = entry.partition("=")
        if not name.strip() or not command.strip():
            raise ToolSpecError(f"--app takes NAME=COMMAND, got {entry!r}")
        apps[name.strip()] = shlex.split(command)
    try:
        desktop = options.desktop_sandbox or "none"
        display = VirtualDisplay(sandbox=desktop)  # type: ignore[arg-type]  # it refuses unknown names in words
    except SandboxError as exc:
        raise ToolSpecError(f"--desktop-sandbox: {exc}") from None
    return ComputerTool(display, apps=apps, screenshots=options.screenshots)


#: Built-in tools by name.
BUILTIN_TOOLS: dict[str, Callable[[ToolOptions], Tool]] = {
    "python": _python,
    "browser": _browser,
    "computer": _computer,
}


def build_tools(
    specs: list[str], options: ToolOptions | None = None, *, search_path: Path | list[Path | None] | None = None
) -> list[Tool]:
    """Tools from built-in names or ``module:attribute`` (a Tool, a function, or a list of them).

    ``module`` is looked up first in ``search_path`` (a folder, or several in order), then as usual.
    """
    folders = search_path if isinstance(search_path, list) else [search_path]
    options = options or ToolOptions()
    tools: list[Tool] = []
    for spec in (s.strip() for s in specs):
        if not spec:
            continue
        if spec in BUILTIN_TOOLS:
            try:
                tools.append(BUILTIN_TOOLS[spec](options))
            except ValueError as exc:
                raise ToolSpecError(str(exc)) from None
            continue
        module_name, _, attr = spec.rpartition(":")
        if not module_name:
            raise ToolSpecError(
                f"unknown tool {spec!r}: name a built-in tool ({', '.join(sorted(BUILTIN_TOOLS))}) or module:function"
            )
        try:  # a task file's or the current folder's own modules, with no lasting sys.path change
            value = getattr(import_beside(module_name, folders), attr)
        except (ImportError, AttributeError) as exc:
            raise ToolSpecError(f"cannot import tool {spec!r}: {exc}") from None
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, Tool):
                tools.append(item)
            elif callable(item):
                tools.append(function_tool(item))
            else:
                raise ToolSpecError(f"{spec!r} is neither a Tool nor a function")
    return mcp_tools(options.mcp) + tools


def mcp_tools(entries: list[Any]) -> list[Tool]:
    """MCPTools for ``--mcp`` values or a task file's ``mcp:`` entries; each server is asked for its tools now,
    so a server that cannot start is a clear error before any run."""
    if not entries:
        return []
    from harmony_agent.tools.base import ToolError
    from harmony_agent.tools.mcp import MCPTools

    tools: list[Tool] = []
    for entry in entries:
        namespace = None
        if isinstance(entry, dict):
            spec, namespace = entry.get("server"), entry.get("namespace")
            if not isinstance(spec, str):
                raise ToolSpecError(f"an mcp entry needs a 'server' spec string, got {entry!r}")
        elif isinstance(entry, str):
            spec = entry.strip()
            named = re.match(r"^([A-Za-z_][A-Za-z0-9_-]*)=(.+)$", spec)
            if named and not spec.startswith(("stdio:", "http:", "https:", "sse:")):
                namespace, spec = named.group(1), named.group(2)
        else:
            raise ToolSpecError(f"an mcp entry must be a spec string or a mapping, got {entry!r}")
        try:
            tool = MCPTools(spec, namespace)
            tool.descriptions()
        except (ValueError, ToolError) as exc:
            raise ToolSpecError(str(exc)) from None
        tools.append(tool)
    return tools
