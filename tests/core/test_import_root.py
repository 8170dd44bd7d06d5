"""One import root that cannot collide: a user's own tools.py, agent.py and sandboxes.py beside their script."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import tools, agent, sandboxes  # the user's own modules, beside this script
    from harmony_agent import Agent, BrowserTool, ComputerTool, PythonTool, ScriptedModel, function_tool

    assert tools.MINE and agent.MINE and sandboxes.MINE

    @function_tool
    def double(x: int) -> int:
        '''Twice x.

        Args:
            x: A number.
        '''
        return 2 * x

    script = ScriptedModel([
        '<|channel|>commentary to=functions.double <|constrain|>json<|message|>{"x": 21}<|call|>',
        '<|channel|>final<|message|>42<|return|>',
    ])
    with Agent(script, tools=[double]) as a:
        result = a.run("Double 21.")
    print(result.final_text, PythonTool.__module__, BrowserTool.__module__, ComputerTool.__module__)
    """
)


@pytest.mark.slow  # a fresh interpreter per layout
def test_the_readme_example_runs_beside_a_users_own_tools_agent_and_sandboxes_modules(tmp_path: Path):
    for name in ("tools", "agent", "sandboxes"):
        (tmp_path / f"{name}.py").write_text("MINE = True\n")
    (tmp_path / "example.py").write_text(SCRIPT)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "42",
        "harmony_agent.tools.python",
        "harmony_agent.tools.browser.tool",
        "harmony_agent.tools.computer.tool",
    ]
