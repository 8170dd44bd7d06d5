"""``function_tool``: a plain Python function becomes a harmony function tool.

The JSON Schema comes from the type hints (via pydantic) and the descriptions
from the docstring. Arguments are validated before the function runs, so the
model gets a precise message when it sends the wrong shape, and an exception
inside the function becomes an error result instead of ending the run.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Callable
from typing import Any, get_type_hints

import pydantic
from openai_harmony import ToolDescription

from .base import FUNCTIONS_NAMESPACE, Tool, ToolCall, ToolError, ToolResult, parse_arguments

_ARG_LINE = re.compile(r"^\s{0,8}(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _split_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Summary and per-argument descriptions from a Google- or reST-style docstring."""
    if not doc:
        return "", {}
    doc = inspect.cleandoc(doc)
    summary_lines: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent: int | None = None
    for line in doc.splitlines():
        stripped = line.strip()
        rest = re.match(r":param\s+(?:\w+\s+)?(\w+):\s*(.*)", stripped)
        if rest:
            params[rest.group(1)] = rest.group(2)
            current, section = rest.group(1), "params"
            continue
        if stripped.lower() in ("args:", "arguments:", "parameters:"):
            section, current, arg_indent = "args", None, None
            continue
        if re.match(r"^(returns?|raises|yields|examples?|notes?):$", stripped.lower()):
            section, current = "other", None
            continue
        if section == "args":
            indent = len(line) - len(line.lstrip())
            match = _ARG_LINE.match(line)
            if match and (arg_indent is None or indent <= arg_indent):
                arg_indent = indent
                current = match.group(1).lstrip("*")
                params[current] = match.group(2).strip()
            elif current and stripped:
                params[current] = f"{params[current]} {stripped}".strip()
        elif section is None:
            summary_lines.append(line)
    summary = "\n".join(summary_lines).strip()
    return summary, params


def _strip_titles(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if k != "title" or not isinstance(v, str)}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Inline ``$defs`` references: harmony renders plain nested schemas only."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any, depth: int = 0) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and depth < 20:
                target = dict(defs.get(ref.split("/")[-1], {}))
                extra = {k: v for k, v in node.items() if k != "$ref"}
                return resolve({**target, **extra}, depth + 1)
            return {k: resolve(v, depth) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v, depth) for v in node]
        return node

    return resolve(schema)


class FunctionTool(Tool):
    """One Python function exposed as ``functions.<name>``."""

    namespace = FUNCTIONS_NAMESPACE

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name):
            raise ValueError(f"function tool name {self.name!r} must be a Python-style identifier")
        summary, param_docs = _split_docstring(fn.__doc__)
        self.description = description if description is not None else summary
        self._is_async = inspect.iscoroutinefunction(fn)
        self._args_model = self._build_model(fn, param_docs)
        schema = _strip_titles(_inline_refs(self._args_model.model_json_schema()))
        schema.pop("additionalProperties", None)
        self.parameters = schema

    @staticmethod
    def _build_model(fn: Callable[..., Any], param_docs: dict[str, str]) -> type[pydantic.BaseModel]:
        signature = inspect.signature(fn)
        try:
            hints = get_type_hints(fn)
        except Exception:  # unresolvable forward references: fall back to Any
            hints = {}
        fields: dict[str, Any] = {}
        for param in signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"function tool {fn.__name__}: *args and **kwargs cannot be described to the model")
            annotation = hints.get(param.name, Any)
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (annotation, pydantic.Field(default, description=param_docs.get(param.name)))
        config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)
        return pydantic.create_model(f"{fn.__name__}_arguments", __config__=config, **fields)

    def descriptions(self) -> list[ToolDescription]:
        return [ToolDescription.new(self.name, self.description, parameters=self.parameters)]

    def recipients(self) -> list[str]:
        return [f"{FUNCTIONS_NAMESPACE}.{self.name}"]

    async def run(self, call: ToolCall) -> ToolResult:
        raw = parse_arguments(call)
        try:
            arguments = self._args_model.model_validate(raw)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors()
            )
            raise ToolError(f"invalid arguments for {self.name}: {problems}") from None
        kwargs = {name: getattr(arguments, name) for name in self._args_model.model_fields}
        if self._is_async:
            value = await self.fn(**kwargs)
        else:
            value = await asyncio.to_thread(self.fn, **kwargs)
        if isinstance(value, ToolResult):
            return value
        return ToolResult(output=_to_text(value))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The decorated function stays callable as itself."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r})"


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def function_tool(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None
) -> Any:
    """Turn a function into a tool; usable as ``@function_tool`` or ``@function_tool(name=...)``."""
    if fn is None:
        return lambda f: FunctionTool(f, name=name, description=description)
    return FunctionTool(fn, name=name, description=description)
