"""Tolerant parsing: what gpt-oss emits in the wild is routed, or answered with an error it can act on.

Each row is a completion and what must happen: the function is called with
the arguments, or the model is told what was wrong, or it is a final answer.
The run never crashes.
"""

import pytest
from openai_harmony import ToolNamespaceConfig

from harmony_agent import Agent, ScriptedModel
from harmony_agent.harmony.encoding import encode_completion
from harmony_agent.harmony.parsing import parse_completion
from harmony_agent.tools import Tool, ToolResult
from helpers.completions import final


class FakePython(Tool):
    """A built-in ``python`` namespace that echoes the code it receives."""

    namespace = "python"

    def descriptions(self):
        return []

    def namespace_config(self):
        return ToolNamespaceConfig.python()

    async def _process(self, call):
        return ToolResult(output=f"ran: {call.content}")


class FakeBrowser(Tool):
    namespace = "browser"

    def descriptions(self):
        return ToolNamespaceConfig.browser().tools

    def namespace_config(self):
        return ToolNamespaceConfig.browser()

    async def _process(self, call):
        return ToolResult(output=f"{call.name}: {call.content}")


CALLED = "called"
TOLD = "told"
FINAL = "final"

CASES = [
    # (id, completion, expectation, detail)
    (
        "standard call",
        '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>',
        CALLED,
        "Paris",
    ),
    (
        "recipient in role header",
        ' to=functions.get_weather<|channel|>commentary json<|message|>{"city":"Rome"}<|call|>',
        CALLED,
        "Rome",
    ),
    (
        "constrain glued to name",
        '<|channel|>commentary to=functions.get_weather<|constrain|>json<|message|>{"city":"Oslo"}<|call|>',
        CALLED,
        "Oslo",
    ),
    (
        "json glued to name",
        '<|channel|>commentary to=functions.get_weatherjson<|message|>{"city":"Lima"}<|call|>',
        CALLED,
        "Lima",
    ),
    (
        "call on analysis channel",
        '<|channel|>analysis to=functions.get_weather <|constrain|>json<|message|>{"city":"Kyiv"}<|call|>',
        CALLED,
        "Kyiv",
    ),
    (
        "call ending in return",
        '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Nice"}<|return|>',
        CALLED,
        "Nice",
    ),
    (
        "array-wrapped arguments",
        '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>[{"city":"Bonn"}]<|call|>',
        CALLED,
        "Bonn",
    ),
    (
        "functions.python alias",
        "<|channel|>analysis to=functions.python<|message|>print(2+2)<|call|>",
        CALLED,
        "ran: print(2+2)",
    ),
    (
        "functions.browser.search alias",
        '<|channel|>analysis to=functions.browser.search<|message|>{"query":"gpt-oss"}<|call|>',
        CALLED,
        "search:",
    ),
    (
        "bare function name",
        '<|channel|>commentary to=get_weather <|constrain|>json<|message|>{"city":"Bern"}<|call|>',
        CALLED,
        "Bern",
    ),
    (
        "extra words in header",
        '<|channel|>commentary to=functions.get_weather code json<|message|>{"city":"Riga"}<|call|>',
        CALLED,
        "Riga",
    ),
    (
        "final with constrain json",
        '<|channel|>final <|constrain|>json<|message|>{"answer": 42}<|return|>',
        FINAL,
        '{"answer": 42}',
    ),
    (
        "unknown recipient",
        "<|channel|>commentary to=functions.get_time <|constrain|>json<|message|>{}<|call|>",
        TOLD,
        "no tool named 'functions.get_time'",
    ),
    (
        "invalid JSON",
        '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"<|call|>',
        TOLD,
        "not valid JSON",
    ),
    (
        "arguments failing the schema",
        '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"town":"Paris"}<|call|>',
        TOLD,
        "city: Field required",
    ),
    (
        "arguments not an object",
        '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"Paris"<|call|>',
        TOLD,
        "must be a JSON object",
    ),
    (
        "tool raises",
        '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Atlantis"}<|call|>',
        TOLD,
        "no such city",
    ),
    (
        "truncated nested JSON",
        '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": {"name": "Pa<|call|>',
        TOLD,
        "not valid JSON",
    ),
]


@pytest.mark.parametrize("completion,expectation,detail", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_tolerant_parse_table(completion, expectation, detail, weather_tool):
    model = ScriptedModel([completion, final("done")])
    agent = Agent(model, tools=[weather_tool, FakePython(), FakeBrowser()], max_steps=3)
    result = agent.run("go")
    assert result.stop_reason == "final"
    results = [e for e in result.events if e.type == "tool_result"]
    if expectation == FINAL:
        assert results == []
        assert result.final_text == detail
        assert result.steps == 1
    elif expectation == CALLED:
        assert len(results) == 1 and not results[0].is_error, results
        assert detail in results[0].content
        assert result.final_text == "done"
    else:
        assert len(results) == 1 and results[0].is_error
        assert detail in results[0].content
        # The model reads the error as a tool message on the next step.
        tool_msgs = [m for m in result.messages if m.author.role.value == "tool"]
        assert detail in tool_msgs[-1].content[0].text
        assert result.final_text == "done"


@pytest.mark.parametrize(
    "completion",
    [
        "<|channel|>final hello<|end|>",
        "hello there<|end|>",
        "<|start|>assistant<|channel|>final<|message|>hi<|return|>",
        "<|channel|><|channel|><|message|><|message|><|end|>",
        "<|message|><|return|>",
        "<|constrain|><|call|>",
    ],
    ids=["no message token", "no header", "double start", "stacked specials", "empty", "constrain only"],
)
def test_malformed_output_never_crashes(completion):
    result = Agent(ScriptedModel([completion, final("recovered")]), max_steps=3).run("go")
    assert result.stop_reason == "final"
    assert isinstance(result.final_text, str)


def test_parser_recovers_after_a_bad_message():
    text = "<|channel|>final hello<|end|><|start|>assistant<|channel|>final<|message|>ok<|return|>"
    parsed = parse_completion(encode_completion(text))
    assert parsed[0].problem and parsed[-1].channel == "final" and parsed[-1].text == "ok"


def test_cut_off_message_is_kept():
    parsed = parse_completion(encode_completion("<|channel|>analysis<|message|>thinking ab"))
    assert parsed[0].channel == "analysis" and parsed[0].text == "thinking ab" and parsed[0].end_token is None
