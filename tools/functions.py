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

import docstring_parser
import pydantic
from openai_harmony import ToolDescription

from harmony_agent.tools.base import FUNCTIONS_NAMESPACE, Tool, ToolCall, ToolError, ToolResult, parse_arguments

#: Seconds a function tool may run before the model is told it was abandoned.
DEFAULT_TIMEOUT = 120.0


def _split_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Summary and per-argument descriptions from a Google, NumPy or Sphinx docstring."""
    if not doc:
        return "", {}
    parsed = docstring_parser.parse(doc)
    summary = "\n\n".join(part for part in (parsed.short_description, parsed.long_description) if part)
    params = {p.arg_name.lstrip("*"): " ".join((p.description or "").split()) for p in parsed.params}
    return summary.strip(), {name: text for name, text in params.items() if text}


class FunctionTool(Tool):
    """One Python function exposed as ``functions.<name>``."""

    namespace = FUNCTIONS_NAMESPACE

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds, or None for no limit")
        self.fn = fn
        self.timeout = timeout
        self.name = name or fn.__name__
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name):
            raise ValueError(f"function tool name {self.name!r} must be a Python-style identifier")
        summary, param_docs = _split_docstring(fn.__doc__)
        self.description = description if description is not None else summary
        self._is_async = inspect.iscoroutinefunction(fn)
        self._args_model = self._build_model(fn, param_docs)
        # The raw pydantic schema; the agent normalises every tool's schema for harmony when it renders.
        schema = self._args_model.model_json_schema()
        schema.pop("additionalProperties", None)
        schema.pop("title", None)
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

    async def _process(self, call: ToolCall) -> ToolResult:
        raw = parse_arguments(call)
        try:
            arguments = self._args_model.model_validate(raw)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors()
            )
            raise ToolError(f"invalid arguments for {self.name}: {problems}") from None
        kwargs = {name: getattr(arguments, name) for name in self._args_model.model_fields}
        try:
            value = await asyncio.wait_for(self._call(kwargs), self.timeout)
        except asyncio.TimeoutError:
            # A thread cannot be stopped from outside: a sync function is abandoned, not killed.
            raise ToolError(
                f"{self.name} did not finish within {self.timeout:g} s and was abandoned; "
                "try again with a smaller request, or do without it"
            ) from None
        if isinstance(value, ToolResult):
            return value
        return ToolResult(output=_to_text(value))

    async def _call(self, kwargs: dict[str, Any]) -> Any:
        """Call the function, turning ``SystemExit`` (argparse) and other BaseExceptions into a ToolError.

        They must not cross a task or thread boundary: asyncio lets SystemExit and
        KeyboardInterrupt escape the event loop itself.
        """
        if self._is_async:
            try:
                return await self.fn(**kwargs)
            except (Exception, asyncio.CancelledError):
                raise
            except BaseException as exc:
                raise ToolError(_base_exception_message(self.name, exc)) from None
        outcome = await asyncio.to_thread(_contained, self.fn, kwargs)
        if isinstance(outcome, _Raised):
            raise ToolError(_base_exception_message(self.name, outcome.exception))
        return outcome

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The decorated function stays callable as itself."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r})"


class _Raised:
    def __init__(self, exception: BaseException) -> None:
        self.exception = exception


def _contained(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    try:
        return fn(**kwargs)
    except Exception:
        raise
    except BaseException as exc:  # SystemExit from argparse, KeyboardInterrupt raised by hand
        return _Raised(exc)


def _base_exception_message(name: str, exc: BaseException) -> str:
    return f"{name} raised {type(exc).__name__}({', '.join(repr(a) for a in exc.args)}) instead of returning"


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
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> Any:
    """Turn a function into a tool; usable as ``@function_tool`` or ``@function_tool(name=..., timeout=...)``."""
    if fn is None:
        return lambda f: FunctionTool(f, name=name, description=description, timeout=timeout)
    return FunctionTool(fn, name=name, description=description, timeout=timeout)
