"""The built-in python tool: what the model is told, what it reads back, and agent runs that compute with it."""

from __future__ import annotations

import pytest
from openai_harmony import Role, ToolNamespaceConfig

from harmony_agent import Agent, PolicyModel
from harmony_agent.harmony.encoding import decode, render_prompt
from harmony_agent.sandboxes import Execution, ExecutionError, LocalSandbox
from harmony_agent.tools import PythonTool, ToolCall
from harmony_agent.tools.python import choose_sandbox, extract_code, render_execution, tool_description
from helpers import ROOT
from helpers.available import KINDS, make, require
from helpers.cli_support import run_cli


def python_call(code: str) -> str:
    """Harmony text of a python call as gpt-oss writes it: raw code on the analysis channel."""
    return f"<|channel|>analysis to=python code<|message|>{code}<|call|>"


def test_the_model_gets_harmonys_stateful_description_with_the_real_facts():
    tool = PythonTool(sandbox=LocalSandbox(), timeout=60)
    text = tool_description(60)
    assert "stateful Jupyter notebook" in text and "/mnt/data" in text
    assert "60.0 seconds" in text and "Internet access for this session is disabled." in text and "UNKNOWN" not in text
    config = tool.namespace_config()
    assert config.name == "python" and config.tools == [] and config.description == text
    assert tool.recipients() == ["python"]
    # At the default timeout the text is harmony's own, down to "120.0 seconds".
    default = tool_description(120.0)
    assert "time out after 120.0 seconds" in default
    assert default.split("Internet access")[0] == ToolNamespaceConfig.python().description.split("Internet access")[0]


def test_calls_are_read_as_raw_code_with_tolerance_for_json_and_fences():
    assert extract_code(ToolCall("python", "analysis", "x = 1\nx")) == "x = 1\nx"
    assert extract_code(ToolCall("python", "analysis", '{"code": "print(2)"}')) == "print(2)"
    assert extract_code(ToolCall("python", "analysis", "```python\nprint(3)\n```")) == "print(3)"
    assert extract_code(ToolCall("python", "analysis", "{1: 2}")) == "{1: 2}"  # a dict literal is code


def test_the_reply_shows_outputs_then_the_error_then_notes():
    shown = render_execution(
        Execution(
            status="ok", stdout="hi\n", result="42", files=("/mnt/data/a.csv",), images=("/mnt/data/figure-1.png",)
        )
    )
    assert shown.text() == "hi\n42\n[files written: /mnt/data/a.csv]\n[figures saved: /mnt/data/figure-1.png]"
    failed = render_execution(
        Execution(
            status="error",
            stdout="before\n",
            error=ExecutionError("ValueError", "bad", "Traceback ...\nValueError: bad\n"),
        )
    )
    assert failed.is_error and failed.text() == "before\n\nError: Traceback ...\nValueError: bad"
    crashed = render_execution(
        Execution(status="crashed", error=ExecutionError("KernelDied", "killed"), state_lost=True, notes=("restarted",))
    )
    assert crashed.text() == "Error: KernelDied: killed\nrestarted" and crashed.metadata["state_lost"]
    assert "no output" in render_execution(Execution(status="ok")).text()


def test_unknown_sandbox_names_are_refused():
    with pytest.raises(ValueError, match="unknown sandbox"):
        PythonTool(sandbox="vm")


async def test_auto_prefers_docker_and_falls_back_to_bubblewrap_saying_why():
    require("docker")
    require("bubblewrap")
    sandbox, why = choose_sandbox("auto")
    assert sandbox.kind == "docker" and "Docker" in why
    sandbox, why = choose_sandbox("auto", image="harmony-agent/no-such-image:0")
    assert sandbox.kind == "bubblewrap" and "no-such-image" in why and "missing" in why


@pytest.mark.parametrize("kind", KINDS)
async def test_state_errors_and_timeouts_reach_the_model_as_a_notebook_would_show_them(kind):
    tool = PythonTool(sandbox=make(kind), timeout=2)
    try:
        line = await tool.start()
        assert kind in line.lower()
        first = await tool.process(ToolCall("python", "analysis", "total = sum(range(10))\ntotal"))
        assert first.text() == "45" and first.metadata["sandbox"] == kind
        second = await tool.process(ToolCall("python", "analysis", "print(total * 2)\n1 / 0"))
        assert second.text().startswith("90\n\nError: ZeroDivisionError Traceback (most recent call last)\n")
        assert "----> 2 1 / 0" in second.text() and second.text().endswith("ZeroDivisionError: division by zero")
        late = await tool.process(ToolCall("python", "analysis", "import time\ntime.sleep(30)"))
        assert late.is_error and "timed out after 2 s" in late.text() and late.metadata["status"] == "timeout"
        assert (await tool.process(ToolCall("python", "analysis", "total"))).text() == "45"
    finally:
        await tool.aclose()


def computing_policy(messages):
    """Reads only the conversation: asks python, then answers with what python printed."""
    last = messages[-1]
    if last.author.role == Role.TOOL and last.author.name == "python":
        value = last.content[0].text.strip()
        return f"<|channel|>final<|message|>The 30th Fibonacci number is {value}.<|return|>"
    code = "a, b = 0, 1\nfor _ in range(30):\n    a, b = b, a + b\na"
    return "<|channel|>analysis<|message|>I will compute it.<|end|><|start|>assistant" + python_call(code)


@pytest.mark.parametrize("kind", KINDS)
async def test_an_agent_computes_with_python_and_answers(kind):
    tool = PythonTool(sandbox=make(kind))
    async with Agent(PolicyModel(computing_policy), tools=[tool]) as agent:
        system = decode(render_prompt(agent.preamble()))
        assert "## python" in system and "stateful Jupyter notebook" in system  # the model is told of the tool
        result = await agent.arun("What is the 30th Fibonacci number?")
    assert result.stop_reason == "final"
    assert result.final_text == "The 30th Fibonacci number is 832040."
    calls = [e for e in result.events if e.type == "tool_call"]
    assert [c.recipient for c in calls] == ["python"]
    assert not tool.sandbox.started  # the agent closed it


@pytest.mark.parametrize("kind", KINDS)
def test_the_readme_example_runs_python_in_the_chosen_sandbox(kind):
    require(kind)
    proc = run_cli(["run", "examples/python_task.yaml", "--sandbox", kind, "--yes"], cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "The mean is 13.7 and the sample standard deviation is 1.273." in proc.stdout
    assert f"python tool: {'Docker' if kind == 'docker' else 'bubblewrap'} (asked for)" in proc.stderr


def test_the_cli_refuses_an_unknown_sandbox(tmp_path):
    proc = run_cli(
        ["run", "x", "--model", "scripted:none.yaml", "--tools", "python", "--sandbox", "vm"], cwd=ROOT, timeout=60
    )
    assert proc.returncode == 2 and "unknown sandbox 'vm'" in proc.stderr
