"""Results come home: the files the python tool makes are copied to the run's output folder after each turn.

The README's ``run "Plot sin(x) and save it" --tools python`` flow runs for
real (the CLI in a subprocess, a scripted policy in place of gpt-oss, real
Docker or bubblewrap), and the plot must be in ``runs/<run id>/`` of the
folder it ran from, named in ``--json``; from Python, ``result.files`` names
the copies. What the sandbox names as its files is never taken as a host path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from openai_harmony import Message, Role

from harmony_agent import Agent
from harmony_agent.models import PolicyModel
from harmony_agent.tools.python import PythonTool
from helpers import ROOT
from helpers.available import KINDS, require
from helpers.cli_support import cli_env

ATTACK = (
    "import gc\nk = next(o for o in gc.get_objects() if type(o).__name__ == 'Kernel' and hasattr(o, 'images'))\n"
    "k.images.append({secret!r})\nimport os\nos.symlink({secret!r}, 'link.txt')\n"
    "open('table.csv', 'w').write('x,y\\n1,2\\n')"
)


def scripted(code: str):
    """A policy that runs ``code`` with the python tool once, then answers."""

    def policy(messages: list[Message]) -> str:
        if messages[-1].author.role == Role.TOOL:
            return "<|channel|>final<|message|>done<|return|>"
        return f"<|channel|>analysis to=python code<|message|>{code}<|call|>"

    return policy


@pytest.mark.parametrize("kind", KINDS)
def test_the_readme_plot_flow_leaves_the_png_in_the_runs_output_folder(kind, tmp_path):
    require(kind)
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "harmony_agent.cli", "run", "Plot sin(x) and save it", "--tools", "python"]
        + ["--model", "policy:examples.plot_policy:policy", "--sandbox", kind, "--yes", "--json"],
        cwd=work,
        env=cli_env(tmp_path, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    runs = list((work / "runs").iterdir())
    assert len(runs) == 1, runs
    plot = runs[0] / "samples.png"
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert str(plot) in result["files"]
    assert all(Path(path).is_relative_to(runs[0]) for path in result["files"]), result["files"]


@pytest.mark.parametrize("kind", KINDS)
def test_result_files_are_copies_in_the_output_folder_and_never_a_host_path_the_sandbox_named(kind, tmp_path):
    require(kind)
    secret = tmp_path / "host-only.txt"
    secret.write_text("host secret 91c2")
    out = tmp_path / "out"
    agent = Agent(PolicyModel(scripted(ATTACK.format(secret=str(secret)))), tools=[PythonTool(kind)], output_dir=out)
    try:
        result = agent.run("make a table")
    finally:
        agent.close()
    assert result.ok, result.error
    assert result.files == [str(out / "table.csv")]
    assert result.events[0].type == "run_start" and result.events[0].output_dir == str(out)
    assert (out / "table.csv").read_text() == "x,y\n1,2\n"
    assert not (out / "link.txt").exists()
    assert all("host secret" not in p.read_text() for p in out.rglob("*") if p.is_file())
    tool_results = [e for e in result.events if e.type == "tool_result"]
    assert all(Path(p).is_relative_to(out) for e in tool_results for p in e.images + e.files)


def test_each_session_gets_its_own_runs_folder_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    agent = Agent(PolicyModel(scripted("1")), tools=[PythonTool("bubblewrap")])
    first, second = agent.session(), agent.session()
    try:
        assert first.output_dir.parent == second.output_dir.parent == tmp_path / "runs"
        assert first.output_dir != second.output_dir and first.output_dir.name == first.run_id
        assert first.tools[0].output_dir == first.output_dir
        assert not (tmp_path / "runs").exists()  # made only once a file comes home
    finally:
        first.close()
        second.close()
        agent.close()
