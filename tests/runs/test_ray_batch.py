"""A batch on a local Ray instance, with the real python tool: results stream back into the same file."""

from __future__ import annotations

import pytest

from helpers import TESTS

ray = pytest.importorskip("ray")

from harmony_agent.runs.batch import read_results
from harmony_agent.runs.factory import TaskAgentFactory
from harmony_agent.runs.ray import run_batch_on_ray, task_resources
from harmony_agent.runs.tasks import load_task_file
from helpers.available import require

TASKS = TESTS / "tasks" / "squares.yaml"


def test_a_batch_runs_as_ray_tasks_with_the_python_tool(tmp_path):
    require("bubblewrap")
    specs = load_task_file(TASKS)
    assert task_resources(specs[0]) == {"harmony_python": 0.01}
    seen = []
    results = run_batch_on_ray(
        specs,
        TaskAgentFactory(),
        results=tmp_path / "results.jsonl",
        transcripts=tmp_path / "runs",
        progress=lambda state: seen.append(state.done),
    )
    squares, wrong = results
    assert squares.passed, squares.checks
    assert not wrong.passed
    assert {r.id for r in read_results(tmp_path / "results.jsonl")} == {"squares", "wrong"}
    assert (tmp_path / "runs" / "squares.jsonl").is_file()  # written by the worker
    assert seen[-1] == 2
    assert not ray.is_initialized()  # the instance started here was shut down
