"""The batch, report and demo commands, driven through the real command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from harmony_agent.cli.app import app
from helpers import TESTS
from helpers.available import require

TASKS = TESTS / "tasks" / "squares.yaml"
runner = CliRunner()


def test_batch_command_runs_checks_writes_results_and_report_and_exits_by_outcome(tmp_path):
    require("bubblewrap")
    out = tmp_path / "out"
    result = runner.invoke(app, ["batch", str(TASKS), "--concurrency", "2", "--output", str(out), "--report"])
    assert result.exit_code == 1, result.output  # 'wrong' fails its checks
    assert "1 of 2 passed" in result.output and "squares" in result.output
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {line["id"]: line["passed"] for line in lines} == {"squares": True, "wrong": False}
    assert (out / "report.html").is_file() and (out / "runs" / "squares.jsonl").is_file()
    again = runner.invoke(app, ["batch", str(TASKS), "--output", str(out), "--resume"])
    assert again.exit_code == 1 and "2 resumed" not in again.output  # resumed tasks are not rerun
    assert len((out / "results.jsonl").read_text().splitlines()) == 2


def test_batch_and_report_bad_input_is_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: x\ncheckz: []\n")
    result = runner.invoke(app, ["batch", str(bad)])
    assert result.exit_code == 2 and "checkz: unknown key" in result.output
    assert runner.invoke(app, ["report", str(tmp_path / "missing.jsonl")]).exit_code == 2
    assert runner.invoke(app, ["batch", str(tmp_path / "nothing-here.yaml")]).exit_code == 2


def test_report_command_writes_html_of_a_transcript(tmp_path):
    from harmony_agent import Agent, ScriptedModel
    from helpers.completions import final

    transcript = tmp_path / "run.jsonl"
    with Agent(ScriptedModel([final("done")]), transcript=transcript) as agent:
        agent.run("x")
    result = runner.invoke(app, ["report", str(transcript)])
    assert result.exit_code == 0, result.output
    assert "done" in (tmp_path / "run.html").read_text()


def test_run_with_a_task_list_runs_it_as_a_batch(tmp_path, monkeypatch):
    require("bubblewrap")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", str(TASKS)])
    assert result.exit_code == 1, result.output
    assert "1 of 2 passed" in result.output and (tmp_path / "runs" / "batch" / "results.jsonl").is_file()
