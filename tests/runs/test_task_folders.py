"""``module:function`` and ``policy:`` specs in a task file are relative to the file's folder, from any folder.

Two task folders each hold a ``policy.py``, a ``helpers.py`` (a function
check) and a ``tools_here.py`` (a tool) of the same names but different
answers; a batch runs both from a third folder, and ``run`` runs a task
file from elsewhere. Nothing is left on ``sys.path`` afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from harmony_agent.runs.batch import run_batch
from harmony_agent.runs.factory import TaskAgentFactory
from harmony_agent.runs.tasks import load_tasks
from helpers import ROOT
from helpers.cli_support import run_cli

POLICY = """
import json
from openai_harmony import Role


def policy(messages):
    last = messages[-1]
    if last.author.role == Role.TOOL:
        return "<|channel|>final<|message|>{word} says " + last.content[0].text + "<|return|>"
    call = json.dumps({{"x": "{word}"}})
    return "<|channel|>commentary to=functions.echo <|constrain|>json<|message|>" + call + "<|call|>"
"""

TOOL = '''
def echo(x: str) -> str:
    """Echo from {word}'s folder.

    Args:
        x: Anything.
    """
    return "{word}-tool:" + x
'''

CHECK = """
def answered(result, session):
    return True if result.final_text.startswith("{word} says {word}-tool:{word}") else result.final_text
"""

TASK = """id: {word}
task: say something
model: policy:policy:policy
tools: [tools_here:echo]
checks:
  - function: helpers:answered
"""


def _folder(root: Path, word: str) -> Path:
    folder = root / word
    folder.mkdir()
    (folder / "policy.py").write_text(POLICY.format(word=word))
    (folder / "tools_here.py").write_text(TOOL.format(word=word))
    (folder / "helpers.py").write_text(CHECK.format(word=word))
    (folder / "task.yaml").write_text(TASK.format(word=word))
    return folder


def test_a_batch_of_two_folders_imports_each_tasks_own_modules_and_leaves_sys_path_alone(tmp_path, monkeypatch):
    alpha, beta = _folder(tmp_path, "alpha"), _folder(tmp_path, "beta")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    before = list(sys.path)
    specs = load_tasks([alpha / "task.yaml", beta / "task.yaml"])
    results = asyncio.run(run_batch(specs, TaskAgentFactory(), results=elsewhere / "results.jsonl"))
    assert [(r.id, r.passed) for r in results] == [("alpha", True), ("beta", True)], [
        (r.error, r.checks) for r in results
    ]
    assert results[1].final_text.startswith("beta says beta-tool:beta")
    assert sys.path == before
    for name in ("policy", "helpers", "tools_here"):  # leave no module of the test folders behind for others
        sys.modules.pop(name, None)


@pytest.mark.slow  # CLI runs in subprocesses
def test_run_finds_a_task_files_modules_from_another_folder(tmp_path):
    folder = _folder(tmp_path, "gamma")
    (folder / "task.yaml").write_text("task: say something\nmodel: policy:policy:policy\ntools: [tools_here:echo]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = run_cli(["run", str(folder / "task.yaml"), "--yes", "--json"], cwd=elsewhere, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["final_text"] == "gamma says gamma-tool:gamma"


@pytest.mark.slow  # runs the README's tasks with their real tools
def test_the_readme_task_files_run_from_another_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for name, expected in (("weather_task", "14 degrees warmer"), ("mcp_task", "25 °C")):
        done = run_cli(["run", str(ROOT / "examples" / f"{name}.yaml"), "--yes"], cwd=tmp_path, env=env, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        assert expected in done.stdout
