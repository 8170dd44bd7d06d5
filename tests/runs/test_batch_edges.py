"""``batch`` and ``report`` at their edges: the live clock, Ctrl-C, long errors, stray YAML, folders, timeouts.

The batch runs on a real pty where the live line matters, and piped
otherwise; the scripted model and a slow function tool keep it quick.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

from harmony_agent.runs.batch import run_batch
from harmony_agent.runs.factory import TaskAgentFactory
from harmony_agent.runs.tasks import load_tasks
from helpers.cli_support import PtySession, cli_env, run_cli

SLOW = '''
import time


def slow(seconds: float) -> str:
    """Wait a while.

    Args:
        seconds: How long.
    """
    time.sleep(seconds)
    return "waited"


def always(result, session):
    return True
'''

CALL = '<|channel|>commentary to=functions.slow <|constrain|>json<|message|>{{"seconds": {s}}}<|call|>'


def _tasks(folder: Path, seconds: float = 4, timeout: float | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "slowtools.py").write_text(SLOW)
    (folder / "script.yaml").write_text(  # a scripted model's file beside the task file, no task in it
        json.dumps({"completions": [CALL.format(s=seconds), "<|channel|>final<|message|>done<|return|>"]})
    )
    task = {
        "id": "slow",
        "task": "wait",
        "model": "scripted:script.yaml",
        "tools": ["slowtools:slow"],
        "checks": [{"answer_contains": "done"}, {"function": "slowtools:always"}],
    }
    if timeout:
        task["timeout"] = timeout
    (folder / "task.yaml").write_text(json.dumps(task))
    return folder


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(args, cwd=cwd, env=cli_env(cwd), timeout=180)


@pytest.mark.slow  # waits for the clock to tick
def test_the_live_clock_advances_while_a_task_runs(tmp_path):
    folder = _tasks(tmp_path / "tasks", seconds=4)
    args = ["batch", str(folder / "task.yaml"), "-o", str(tmp_path / "out")]
    session = PtySession(args, tmp_path, cli_env(tmp_path))
    try:
        session.expect(r"1 running · [^·]* passed · [^·]* failed · [1-9] s", timeout=60)  # not stuck at "0 s"
        assert session.wait(timeout=120) == 0
    finally:
        session.close()


@pytest.mark.slow  # a batch on a pty
def test_ctrl_c_ends_with_its_message_on_a_line_of_its_own(tmp_path):
    folder = _tasks(tmp_path / "tasks", seconds=30)
    args = ["batch", str(folder / "task.yaml"), "-o", str(tmp_path / "out")]
    session = PtySession(args, tmp_path, cli_env(tmp_path))
    try:
        session.expect(r"1 running", timeout=60)
        session.send("\x03")
        assert session.wait(timeout=60) == 130
    finally:
        session.close()
    raw = session.raw.decode("utf-8", "replace")
    assert re.search(r"\n[^\n]*interrupted[^\n]*--resume goes on\r?\n", raw), raw[-500:]


@pytest.mark.slow  # a batch in a subprocess
def test_a_folder_with_a_scripted_models_yaml_runs_its_tasks_and_notes_the_other_file(tmp_path):
    folder = _tasks(tmp_path / "tasks", seconds=0)
    done = _cli(tmp_path, "batch", str(folder), "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "script.yaml: not a task file" in done.stderr and "1 of 1 passed" in done.stdout


def test_errors_are_shown_whole_in_the_table(tmp_path):
    missing = tmp_path / ("a-very-long-folder-name-" * 4) / "script.json"
    task = tmp_path / "t.yaml"
    task.write_text(json.dumps({"tasks": [{"id": "broken", "task": "x", "model": f"scripted:{missing}"}]}))
    done = _cli(tmp_path, "batch", str(task), "-o", str(tmp_path / "out"))
    assert done.returncode == 1
    cells = [line.split("│")[3].strip() for line in done.stdout.splitlines() if line.count("│") == 8]
    assert str(missing) in "".join(cells), done.stdout


@pytest.mark.slow  # a batch and a report in subprocesses
def test_report_takes_a_batch_folder_and_its_links_work_from_another_folder(tmp_path):
    folder = _tasks(tmp_path / "tasks", seconds=0)
    out = tmp_path / "work" / "out"
    (tmp_path / "work").mkdir()
    assert _cli(tmp_path / "work", "batch", str(folder / "task.yaml"), "-o", "out").returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _cli(elsewhere, "report", str(out))
    assert done.returncode == 0, done.stderr
    page = out / "report.html"
    assert page.is_file()
    hrefs = re.findall(r'href="([^"]+)"', page.read_text())
    assert hrefs and all((page.parent / unquote(href)).is_file() for href in hrefs), hrefs
    assert _cli(elsewhere, "report", str(elsewhere)).returncode == 2  # a folder with no results: said plainly


def test_a_timed_out_task_records_each_checks_outcome(tmp_path, monkeypatch):
    folder = _tasks(tmp_path / "tasks", seconds=20, timeout=1)
    monkeypatch.chdir(tmp_path)
    specs = load_tasks([folder / "task.yaml"])
    (result,) = asyncio.run(run_batch(specs, TaskAgentFactory(), results=tmp_path / "results.jsonl"))
    assert result.stop_reason == "timeout" and not result.passed
    outcomes = {c.check.split()[0]: c for c in result.checks}
    assert set(outcomes) == {"answer_contains", "function"}
    assert not outcomes["answer_contains"].passed and "without an answer" in outcomes["answer_contains"].reason
    assert outcomes["function"].passed
