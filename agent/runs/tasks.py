"""Task files: one task or a list of them in YAML, each with the checks that say whether it passed.

```yaml
model: http://localhost:8000/v1      # defaults for every task below
tools: [python]
tasks:
  - id: squares
    task: Save the first ten squares to squares.txt in /mnt/data.
    checks:
      - file_exists: squares.txt
      - answer_contains: "81"
```

Files are validated with pydantic: a typo'd key or a wrong type is one error
naming the file, the task and the key. Paths in a task file (a ``local:``
search folder, a ``scripted:`` model, a check's function module) are taken
relative to the file, not to the current directory. ``${NAME}`` in a value is
replaced by a variable: ``TASK_DIR`` (the file's folder), ``PYTHON`` (this
interpreter), those the caller passes, then the environment.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from harmony_agent.yaml_files import YamlFileError, read_yaml

CHECK_KINDS = (
    "answer_equals",
    "answer_contains",
    "answer_matches",
    "file_exists",
    "file_contains",
    "file_sha256",
    "page_url",
    "page_contains",
    "screen_contains",
    "function",
)


class TaskFileError(ValueError):
    """A task file that cannot be used; the message names the file, the task and the key."""


class TaskCheck(BaseModel):
    """One check: its kind (one of :data:`CHECK_KINDS`) and what it expects."""

    model_config = ConfigDict(frozen=True)
    kind: Literal[CHECK_KINDS]  # type: ignore[valid-type]  # one tuple of kinds for pydantic and the docs
    value: str
    path: str | None = None  # file checks: the file in /mnt/data

    def describe(self) -> str:
        return f"{self.kind} {self.path + ': ' if self.path else ''}{self.value!r}"


def _parse_check(raw: Any) -> TaskCheck:
    if isinstance(raw, TaskCheck):
        return raw
    if isinstance(raw, dict) and "kind" in raw and "value" in raw:
        return TaskCheck.model_validate(raw)  # a check as it was saved (a spec sent to a Ray worker)
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ValueError(f"a check is a mapping with one key, one of {', '.join(CHECK_KINDS)}; got {raw!r}")
    ((kind, spec),) = raw.items()
    if kind not in CHECK_KINDS:
        raise ValueError(f"unknown check {kind!r}; checks are {', '.join(CHECK_KINDS)}")
    if kind in ("file_contains", "file_sha256"):
        key = "text" if kind == "file_contains" else "sha256"
        if not isinstance(spec, dict) or set(spec) != {"path", key}:
            raise ValueError(f"{kind} takes {{path: FILE, {key}: ...}}; got {spec!r}")
        return TaskCheck(kind=kind, value=str(spec[key]), path=str(spec["path"]))
    if not isinstance(spec, (str, int, float)) or isinstance(spec, bool):
        raise ValueError(f"{kind} takes a text; got {spec!r}")
    if kind == "answer_matches":
        try:
            re.compile(str(spec))
        except re.error as exc:
            raise ValueError(f"answer_matches: {spec!r} is not a regular expression ({exc})") from None
    if kind == "function" and ":" not in str(spec):
        raise ValueError(f"function takes module:function; got {spec!r}")
    return TaskCheck(kind=kind, value=str(spec))


class TaskSpec(BaseModel):
    """One task and how to run it. Unset fields fall back to the file's defaults, then the command line's."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, pattern=r"^[\w.-]+$")
    task: str = Field(min_length=1)
    model: str | None = None
    tools: list[str] = []
    instructions: str | None = None
    reasoning: Literal["low", "medium", "high"] | None = None
    max_steps: PositiveInt | None = None
    max_tokens: PositiveInt | None = None
    sandbox: Literal["auto", "docker", "bubblewrap", "unsandboxed"] | None = None
    search: str | None = None
    allow: list[str] = []
    deny: list[str] = []
    apps: list[str] = []
    mcp: list[str | dict[str, str]] = []
    timeout: PositiveFloat | None = None
    checks: list[TaskCheck] = []
    #: The folder of the file the task came from: ``module:function`` names are looked up there too.
    _folder: Path | None = PrivateAttr(default=None)

    @property
    def folder(self) -> Path | None:
        return self._folder

    @field_validator("tools", "allow", "deny", "apps", "mcp", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("checks", mode="before")
    @classmethod
    def _checks(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError("checks must be a list")
        return [_parse_check(item) for item in value]


_DEFAULT_KEYS = set(TaskSpec.model_fields) - {"id", "task"}


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: Any, variables: dict[str, str], where: str) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return variables[name]
            if name in os.environ:
                return os.environ[name]
            raise TaskFileError(
                f"{where}: ${{{name}}} is not set (variables: {', '.join(sorted(variables))}, or the environment)"
            )

        return _VARIABLE.sub(replace, value)
    if isinstance(value, list):
        return [_expand(item, variables, where) for item in value]
    if isinstance(value, dict):
        return {key: _expand(item, variables, where) for key, item in value.items()}
    return value


def _read(path: Path) -> Any:
    """A task file's YAML, read by the project's one guarded reader (size, YAML bombs), refusals as TaskFileError."""
    try:
        return read_yaml(path, what="task file")
    except YamlFileError as exc:
        raise TaskFileError(str(exc)) from None


def load_task_file(path: str | os.PathLike[str], variables: dict[str, str] | None = None) -> list[TaskSpec]:
    """The tasks of a file (one task, or ``tasks:`` with shared defaults), validated, with paths made absolute."""
    path = Path(path)
    if path.is_dir():
        raise TaskFileError(f"{path} is a directory, not a task file")
    data = _read(path)
    if not isinstance(data, dict):
        raise TaskFileError(f"{path} must be a mapping with a 'task' key, or a 'tasks' list")
    data = expand_variables(data, path, variables)
    if "tasks" in data:
        defaults = {k: v for k, v in data.items() if k != "tasks"}
        unknown = set(defaults) - _DEFAULT_KEYS
        if unknown:
            raise TaskFileError(
                f"{path}: unknown key(s) {sorted(unknown)} beside 'tasks'; allowed: {sorted(_DEFAULT_KEYS)}"
            )
        entries = data["tasks"]
        if not isinstance(entries, list) or not entries:
            raise TaskFileError(f"{path}: 'tasks' must be a non-empty list of tasks")
    else:
        defaults, entries = {}, [data]
    specs = []
    for index, entry in enumerate(entries, start=1):
        name = entry.get("id") if isinstance(entry, dict) else None
        where = f"{path}, task {index}" + (f" ({name})" if name else "")
        if not isinstance(entry, dict):
            raise TaskFileError(f"{where}: a task is a mapping with at least a 'task' key")
        try:
            spec = TaskSpec.model_validate({**defaults, **entry})
        except ValidationError as exc:
            error = exc.errors()[0]
            key = ".".join(str(p) for p in error["loc"]) or "task"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown key; allowed: {', '.join(sorted(TaskSpec.model_fields))}"
            raise TaskFileError(f"{where}: {key}: {message}") from None
        if spec.id is None:
            spec = spec.model_copy(update={"id": path.stem if len(entries) == 1 else f"{path.stem}-{index}"})
        specs.append(_resolve_paths(spec, path.parent))
    ids = [s.id for s in specs if s.id is not None]  # every spec has its id by now
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise TaskFileError(f"{path}: task ids must be unique; repeated: {', '.join(map(str, duplicates))}")
    return specs


def load_tasks(
    paths: Sequence[str | os.PathLike[str]],
    variables: dict[str, str] | None = None,
    *,
    skipped: list[str] | None = None,
) -> list[TaskSpec]:
    """Tasks from files and folders (every ``*.yaml``/``*.yml`` in a folder, sorted); ids must be unique overall.

    A YAML file in a folder that is no task file (a mapping with neither
    ``task`` nor ``tasks``, such as a scripted model's completions) is passed
    over, with a note appended to ``skipped``; a file named on its own must
    be a task file.
    """
    specs: list[TaskSpec] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            found = []
            for file in files:
                data = _read(file)
                if isinstance(data, dict) and not {"task", "tasks"} & set(data):
                    if skipped is not None:
                        skipped.append(f"{file}: not a task file (no 'task' or 'tasks' key)")
                    continue
                found += load_task_file(file, variables)
            if not found:
                raise TaskFileError(f"{path} is a directory holding no .yaml task files")
            specs += found
        elif not path.exists():
            raise TaskFileError(f"task file {path} not found")
        else:
            specs += load_task_file(path, variables)
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            raise TaskFileError(f"two tasks share the id {spec.id!r}; give them ids of their own")
        seen.add(spec.id or "")
    return specs


def _resolve_paths(spec: TaskSpec, base: Path) -> TaskSpec:
    """Relative paths in a task are relative to its file."""
    spec._folder = base.resolve()
    updates = relative_to_file({"model": spec.model, "search": spec.search}, base)
    updates = {key: value for key, value in updates.items() if value != getattr(spec, key)}
    return spec.model_copy(update=updates) if updates else spec


def relative_to_file(settings: dict[str, Any], base: Path) -> dict[str, Any]:
    """``settings`` with a ``scripted:`` model file and a ``local:`` search folder made absolute from ``base``."""
    settings = dict(settings)
    model, search = settings.get("model"), settings.get("search")
    if isinstance(model, str) and model.startswith("scripted:"):
        settings["model"] = "scripted:" + str(_under(base, model[len("scripted:") :]))
    if isinstance(search, str) and search.startswith("local:"):
        folder, at, url = search[len("local:") :].partition("@")
        settings["search"] = f"local:{_under(base, folder)}{at}{url}"
    return settings


def file_variables(path: Path, variables: dict[str, str] | None = None) -> dict[str, str]:
    """The variables a task file's ``${NAME}`` may use: its folder, this interpreter, the caller's."""
    return {"TASK_DIR": str(path.resolve().parent), "PYTHON": sys.executable, **(variables or {})}


def expand_variables(data: Any, path: Path, variables: dict[str, str] | None = None) -> Any:
    """``data`` with each ``${NAME}`` replaced (see :func:`file_variables`; then the environment)."""
    return _expand(data, file_variables(path, variables), str(path))


def _under(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()
