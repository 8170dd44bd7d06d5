"""The MCP options of the command line: ``--mcp``, the task file's ``mcp:`` key, and ``mcp serve``'s bad input."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import ROOT

pytest.importorskip("mcp")

from harmony_agent.cli.app import app

runner = CliRunner()
DEMO = f"stdio:{sys.executable} -m examples.mcp_demo_server"


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)
    # The example task file starts `python`: the one of this environment, as in an activated venv.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def test_the_example_task_file_runs_with_its_mcp_server():
    result = runner.invoke(app, ["run", "examples/mcp_task.yaml", "--yes"])
    assert result.exit_code == 0, result.output
    assert "→ functions.city_weather" in result.output and "← functions.add" in result.output
    assert "25.0" in result.output and "stop: final" in result.output


def test_mcp_flag_with_a_namespace_and_a_task_file_mapping(tmp_path):
    script = tmp_path / "model.yaml"
    script.write_text(
        'completions:\n  - "<|channel|>commentary to=demo.add <|constrain|>json<|message|>{\\"a\\": 1, \\"b\\": 2}<|call|>"\n'
        '  - "<|channel|>final<|message|>three<|return|>"\n'
    )
    flag = runner.invoke(app, ["run", "add", "--yes", "--model", f"scripted:{script}", "--mcp", f"demo={DEMO}"])
    assert flag.exit_code == 0, flag.output
    assert "← demo.add" in flag.output and "3.0" in flag.output
    task = tmp_path / "task.yaml"
    task.write_text(f'task: add\nmodel: scripted:{script}\nmcp:\n  - server: "{DEMO}"\n    namespace: demo\n')
    from_file = runner.invoke(app, ["run", str(task), "--yes"])
    assert from_file.exit_code == 0, from_file.output
    assert "← demo.add" in from_file.output


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["run", "x", "--model", "scripted:examples/mcp_demo.yaml", "--mcp", "ftp://nowhere"],
            "unknown MCP server spec",
        ),
        (
            ["run", "x", "--model", "scripted:examples/mcp_demo.yaml", "--mcp", "stdio:no-such-command-here"],
            "cannot list the tools of MCP server no-such-command-here",
        ),
        (["mcp", "serve", "--tools", "python,teleporter"], "cannot serve teleporter"),
        (["mcp", "serve", "--transport", "carrier-pigeon"], "unknown transport"),
    ],
)
def test_bad_mcp_input_is_a_clear_error(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_the_example_of_our_agent_using_our_own_mcp_server():
    import subprocess

    from helpers.available import KINDS, require, unavailable

    if all(unavailable(kind) for kind in KINDS):
        require(KINDS[-1])
    done = subprocess.run(
        [sys.executable, "-m", "examples.mcp_client_demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "functions.python: 90" in done.stdout and "Twice the sum of 0..9 is 90." in done.stdout
