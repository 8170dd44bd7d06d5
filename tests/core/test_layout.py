"""The shape of the code, held: one way dependencies point, no circles, modules and functions of a readable size.

The import graph is read from the source (every import, at module level, inside functions and
behind ``TYPE_CHECKING`` alike: a circle behind ``TYPE_CHECKING`` is still a circle for a reader).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers import ROOT

FOLDERS = {"agent": "harmony_agent", "tools": "harmony_agent.tools", "sandboxes": "harmony_agent.sandboxes"}
#: Wings of harmony_agent from the bottom up: a module may import its own level or those below. ``yaml_files``
#: (the one guarded YAML reader, for task files and scripted models alike) imports nothing of ours.
LEVELS = {"yaml_files": 0, "harmony": 0, "models": 1, "": 2, "runs": 3, "server": 4, "cli": 5}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    name = [FOLDERS[parts[0]], *parts[1:]]
    return ".".join(name[:-1] if name[-1] == "__init__" else name)


def sources() -> dict[str, Path]:
    found = {}
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            if "kernel" not in path.relative_to(ROOT).parts:  # runs inside the sandbox, on its own
                found[module_name(path)] = path
    return found


MODULES = sources()
# Parsed once, at collection, while the process has one thread: CPython 3.11's ast module keeps a
# recursion counter per interpreter, and a parse racing another thread's (a runtime left running by an
# earlier test) fails with "AST constructor recursion depth mismatch".
TREES = {path: ast.parse(path.read_text()) for path in MODULES.values()}


def imports(path: Path) -> set[str]:
    """The project modules ``path`` imports (a package's re-exports are its own business)."""
    found = set()
    for node in ast.walk(TREES[path]):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("harmony_agent"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("harmony_agent"))
    return {name for name in found if name in MODULES}


GRAPH = {name: imports(path) - {name} for name, path in MODULES.items()}


def layer(name: str) -> tuple[str, int]:
    parts = name.split(".")
    if parts[1:2] == ["sandboxes"]:
        return "sandboxes", 0
    if parts[1:2] == ["tools"]:
        return "tools", 1
    wing = parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LEVELS) else ""
    return "agent", 2 + LEVELS.get(wing, LEVELS[""])


def test_dependencies_point_one_way():
    """agent -> tools -> sandboxes, and within agent: front ends > runs > core > models, harmony."""
    upward = []
    for name, targets in GRAPH.items():
        if name == "harmony_agent":  # the import root re-exports the public surface
            continue
        for target in targets:
            if target != "harmony_agent" and layer(target)[1] > layer(name)[1]:
                upward.append(f"{name} -> {target}")
    assert not upward, "imports running up:\n" + "\n".join(sorted(upward))


def test_no_circles():
    graph = {name: {t for t in targets if not _is_package(t)} for name, targets in GRAPH.items()}
    circles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert not circles, f"import circles: {circles}"


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
    return found


def test_the_circle_detector_finds_a_circle():
    assert [sorted(c) for c in _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) if len(c) > 1] == [
        ["a", "b", "c"]
    ]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_and_function_sizes(name: str):
    source = MODULES[name].read_text()
    assert source.count("\n") <= MAX_MODULE_LINES, f"{name} has {source.count(chr(10))} lines; split it by concern"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(TREES[MODULES[name]])
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_packages_pyproject_lists_are_every_package_folder():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    folders |= {"harmony_agent.sandboxes.kernel"}
    assert listed == folders
