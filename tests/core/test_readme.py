"""The README's own multi-turn Python example runs as written, with the python tool.

Only the model changes: the example names a vLLM server; here a scripted
model plays gpt-oss (no weights here) and the tools are the real ones.
"""

from __future__ import annotations

import re

from harmony_agent import ScriptedModel
from helpers import ROOT
from helpers.available import require
from helpers.completions import call, final

README = ROOT / "README.md"


def python_block(after_heading: str) -> str:
    text = README.read_text()
    section = text.split(f"\n{after_heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_multi_turn_example_keeps_python_state_across_turns():
    require("bubblewrap")
    code = python_block("## Python")
    assert 'Agent("http://localhost:8000/v1"' in code and "previous=result" in code
    script = ScriptedModel(
        [
            call("get_weather", '{"city": "Paris"}'),
            "<|channel|>analysis to=python code<|message|>paris = 18<|call|>",
            final("18 °C in Paris."),
            "<|channel|>analysis to=python code<|message|>print(paris * 9 / 5 + 32)<|call|>",
            final("64.4 °F."),
        ]
    )
    namespace = {"__name__": "readme_example", "SCRIPTED": script}
    exec(compile(code.replace('"http://localhost:8000/v1"', "SCRIPTED"), str(README), "exec"), namespace)
    result, follow_up = namespace["result"], namespace["follow_up"]
    assert result.final_text == "18 °C in Paris." and result.error is None
    outputs = [e.content for e in follow_up.events if e.type == "tool_result"]
    assert outputs == ["64.4"], outputs
    assert follow_up.final_text == "64.4 °F."
