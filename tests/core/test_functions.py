import asyncio
from typing import Literal

import pydantic
import pytest

from harmony_agent.harmony.schema import normalize_schema
from harmony_agent.tools import ToolCall, ToolError, ToolResult, function_tool
from harmony_agent.tools.base import parse_arguments


def run(tool, args: str) -> ToolResult:
    return asyncio.run(tool.process(ToolCall(f"functions.{tool.name}", "commentary", args)))


class Point(pydantic.BaseModel):
    x: float
    y: float


def test_schema_from_type_hints_and_docstring():
    @function_tool
    def route(start: Point, mode: Literal["walk", "drive"] = "walk", stops: list[str] | None = None) -> str:
        """Plan a route.

        Args:
            start: Where to begin.
            mode: How to travel,
                walking or driving.
        """
        return "ok"

    schema = normalize_schema(route.parameters)  # what the agent renders
    assert route.description == "Plan a route."
    assert schema["required"] == ["start"]
    assert schema["properties"]["start"]["properties"]["x"]["type"] == "number"  # $defs inlined
    assert schema["properties"]["mode"]["enum"] == ["walk", "drive"]
    assert schema["properties"]["mode"]["description"] == "How to travel, walking or driving."
    assert schema["properties"]["stops"]["oneOf"] == [
        {"type": "array", "items": {"type": "string"}},
        {"type": ["null"]},
    ]
    assert "$defs" not in schema and "title" not in schema


def test_validation_happens_before_the_call():
    called = []

    @function_tool
    def add(a: int, b: int) -> int:
        called.append((a, b))
        return a + b

    assert run(add, '{"a": 2, "b": 3}').output == "5"
    bad = run(add, '{"a": "two", "b": 3}')
    assert bad.is_error and "a: Input should be a valid integer" in bad.error
    assert called == [(2, 3)]


def test_async_function_and_custom_name():
    @function_tool(name="greet", description="Say hello.")
    async def hello(who: str) -> str:
        await asyncio.sleep(0)
        return f"hello {who}"

    assert hello.name == "greet" and hello.descriptions()[0].description == "Say hello."
    assert run(hello, '{"who": "ada"}').output == "hello ada"
    assert asyncio.run(hello.fn("bob")) == "hello bob"


def test_exceptions_become_error_results():
    @function_tool
    def explode() -> str:
        raise KeyError("boom")

    @function_tool
    def refuse() -> str:
        raise ToolError("not allowed here")

    assert run(explode, "").error == "KeyError: 'boom'"
    assert run(refuse, "{}").text() == "Error: not allowed here"


def test_return_values_are_serialised():
    @function_tool
    def point() -> Point:
        return Point(x=1, y=2)

    assert run(point, "{}").output == '{"x":1.0,"y":2.0}'


def test_bad_functions_are_rejected_at_definition():
    def loose(**kw):
        return kw

    with pytest.raises(TypeError, match="kwargs"):
        function_tool(loose)
    with pytest.raises(ValueError, match="identifier"):
        function_tool(lambda: None, name="bad name")


def test_parse_arguments_shapes():
    def c(arguments: str) -> ToolCall:
        return ToolCall("functions.f", "commentary", arguments)

    assert parse_arguments(c("")) == {}
    assert parse_arguments(c('[{"a": 1}]')) == {"a": 1}
    with pytest.raises(ToolError, match="line 1 column"):
        parse_arguments(c("{"))
