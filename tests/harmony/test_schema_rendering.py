"""What the model reads: function tools rendered by openai-harmony after our schema normalisation.

Each test asserts the exact TypeScript-like text harmony renders in the
developer message, because that text (not the JSON Schema) is what gpt-oss
was trained to read.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

import pydantic
import pytest

from harmony_agent import Agent, ScriptedModel
from harmony_agent.harmony.encoding import developer_message, get_encoding
from harmony_agent.harmony.schema import normalize_description, normalize_schema
from harmony_agent.tools import function_tool


def rendered(*tools) -> str:
    """The namespace block harmony renders for these tools, between its braces."""
    descriptions = [normalize_description(d) for tool in tools for d in tool.descriptions()]
    text = get_encoding().decode(get_encoding().render(developer_message(None, descriptions)))
    return text.split("namespace functions {\n\n", 1)[1].split("\n} // namespace functions", 1)[0]


class Address(pydantic.BaseModel):
    street: str
    zip: str | None = None


class Color(Enum):
    RED = "red"
    GREEN = "green"


class Level(Enum):
    LOW = 1
    HIGH = 2


def test_optional_primitive_is_a_nullable_type_not_any():
    @function_tool
    def f(a: int | None, b: str | None = None) -> None:
        """F."""

    assert rendered(f) == (
        "// F.\ntype f = (_: {\na: number | null,\nb?: string | null, // default: null\n}) => any;\n"
    )


def test_nested_model_behind_optional_keeps_its_fields():
    @function_tool
    def ship(to: Address | None = None) -> None:
        """Ship it.

        Args:
            to: Where to.
        """

    assert rendered(ship) == (
        "// Ship it.\n"
        "type ship = (_: {\n"
        "// Where to.\n"
        "// default: null\n"
        "to?:\n"
        " | {\n"
        "   street: string,\n"
        "   zip?: string | null, // default: null\n"
        "   }\n"
        " | null\n"
        ",\n"
        "}) => any;\n"
    )


def test_union_literal_enum_defaults_and_lists_of_models():
    @function_tool
    def g(
        key: int | str,
        mode: Literal["fast", "slow"] = "fast",
        color: Color = Color.RED,
        level: Level = Level.LOW,
        stops: list[Address] = [],  # noqa: B006 - a default the schema renders; never mutated
        ratio: float = 0.5,
        on: bool = False,
    ) -> None:
        """G."""

    assert rendered(g) == (
        "// G.\n"
        "type g = (_: {\n"
        "key: number | string,\n"
        'mode?: "fast" | "slow", // default: fast\n'
        'color?: "red" | "green", // default: red\n'
        "// Allowed values: 1, 2.\n"
        "level?: number, // default: 1\n"
        "stops?: {\n"
        "    street: string,\n"
        "    zip?: string | null, // default: null\n"
        "    }[], // default: []\n"
        "ratio?: number, // default: 0.5\n"
        "on?: boolean, // default: false\n"
        "}) => any;\n"
    )


def test_functions_without_arguments_render_as_harmony_does():
    @function_tool
    def now() -> str:
        """The time."""

    assert rendered(now) == "// The time.\ntype now = () => any;\n"


@pytest.mark.parametrize(
    "style,doc",
    [
        (
            "google",
            """Book a table.

    Args:
        guests: How many people.
        time: When, as HH:MM.
    """,
        ),
        (
            "numpy",
            """Book a table.

    Parameters
    ----------
    guests : int
        How many people.
    time : str
        When, as HH:MM.
    """,
        ),
        (
            "sphinx",
            """Book a table.

    :param guests: How many people.
    :param time: When, as HH:MM.
    """,
        ),
    ],
)
def test_docstring_styles(style, doc):
    def book(guests: int, time: str) -> str:
        return "ok"

    book.__doc__ = doc
    assert rendered(function_tool(book)) == (
        "// Book a table.\n"
        "type book = (_: {\n"
        "// How many people.\n"
        "guests: number,\n"
        "// When, as HH:MM.\n"
        "time: string,\n"
        "}) => any;\n"
    ), style


def test_schema_from_an_outside_source_is_normalised_too():
    # An MCP server or a hand-written schema: $defs, anyOf, allOf and const.
    schema = {
        "type": "object",
        "$defs": {"Unit": {"type": "string", "enum": ["c", "f"], "title": "Unit"}},
        "properties": {
            "unit": {"allOf": [{"$ref": "#/$defs/Unit"}], "description": "Unit."},
            "kind": {"const": "weather"},
            "count": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        },
    }
    assert normalize_schema(schema) == {
        "type": "object",
        "properties": {
            "unit": {"type": "string", "enum": ["c", "f"], "description": "Unit."},
            "kind": {"enum": ["weather"], "type": "string"},
            "count": {"type": ["integer", "null"]},
        },
    }


def test_builtin_tool_descriptions_are_normalised_in_the_system_message():
    from openai_harmony import ToolDescription

    from harmony_agent.tools.base import Tool

    class Pager(Tool):
        namespace = "pager"

        def descriptions(self):
            return [ToolDescription.new("back", "Go back.", parameters={"type": "object", "properties": {}})]

        async def _process(self, call):
            raise NotImplementedError

    system = Agent(ScriptedModel([]), tools=[Pager()]).preamble()[0]
    text = get_encoding().decode(get_encoding().render(system))
    assert "type back = () => any;" in text and "(_: {\n})" not in text


def test_a_function_named_like_another_tools_action_is_a_clear_error_at_construction():
    @function_tool
    def wait(seconds: float) -> str:
        """Mine."""
        return "ok"

    @function_tool(name="wait")
    def other(seconds: float) -> str:
        """Theirs."""
        return "ok"

    with pytest.raises(ValueError, match=r"two tools answer 'functions.wait'.*rename yours"):
        Agent(ScriptedModel([]), tools=[wait, other])
