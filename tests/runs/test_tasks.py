"""Task files, checks and batch runs, on the real python tool (bubblewrap)."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harmony_agent import Agent, ScriptedModel
from harmony_agent.models import load_model
from harmony_agent.runs.batch import read_results, run_batch, summary
from harmony_agent.runs.tasks import TaskFileError, TaskSpec, load_task_file, load_tasks
from harmony_agent.tools import PythonTool
from helpers import TESTS
from helpers.available import require
from helpers.completions import final

HERE = TESTS
TASKS = HERE / "tasks" / "squares.yaml"


def make_agent(spec: TaskSpec, transcript):
    tools = [PythonTool(sandbox=spec.sandbox or "bubblewrap")] if "python" in spec.tools else []
    return Agent(load_model(spec.model), tools=tools, transcript=transcript, max_steps=spec.max_steps or 5)


def test_task_file_defaults_ids_and_relative_paths():
    squares, wrong = load_task_file(TASKS)
    assert (squares.id, wrong.id) == ("squares", "wrong")
    assert squares.tools == ["python"] and wrong.sandbox == "bubblewrap"  # defaults shared
    assert squares.model == f"scripted:{HERE / 'tasks' / 'squares_script.yaml'}"  # relative to the file
    assert [c.kind for c in squares.checks] == [
        "answer_contains",
        "answer_matches",
        "file_exists",
        "file_contains",
        "function",
    ]


@pytest.mark.parametrize(
    "body,message",
    [
        ("task: hi\nmax_step: 3\n", "task 1: max_step: unknown key"),
        ("task: hi\nmax_steps: lots\n", "max_steps: Input should be a valid integer"),
        ("tasks:\n  - task: a\n    checks:\n      - answer_is: x\n", "checks: unknown check 'answer_is'"),
        (
            "tasks:\n  - task: a\n    checks:\n      - file_contains: x.txt\n",
            r"file_contains takes \{path: FILE, text: ...\}",
        ),
        ("tasks:\n  - task: a\n    checks:\n      - answer_matches: '('\n", "not a regular expression"),
        ("tasks: []\n", "non-empty list"),
        ("tasks:\n  - id: same\n    task: a\n  - id: same\n    task: b\n", "ids must be unique"),
        ("just text\n", "must be a mapping"),
    ],
)
def test_a_bad_task_file_is_one_clear_error(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(TaskFileError, match=message) as info:
        load_task_file(path)
    assert str(path) in str(info.value)


def test_a_folder_is_not_a_task_file_but_load_tasks_reads_it(tmp_path):
    with pytest.raises(TaskFileError, match="is a directory"):
        load_task_file(HERE / "tasks")
    (tmp_path / "a.yaml").write_text("task: one\n")
    (tmp_path / "b.yml").write_text("task: two\n")
    assert [s.id for s in load_tasks([tmp_path])] == ["a", "b"]


def test_checks_pass_and_fail_with_reasons(tmp_path):
    require("bubblewrap")
    results = asyncio.run(
        run_batch(
            load_task_file(TASKS),
            make_agent,
            results=tmp_path / "results.jsonl",
            transcripts=tmp_path / "runs",
            concurrency=2,
        )
    )
    squares, wrong = results
    assert squares.passed, [c for c in squares.checks if not c.passed]
    assert [c.passed for c in squares.checks] == [True] * 5
    assert not wrong.passed
    assert [c.passed for c in wrong.checks] == [False, False]
    assert "It is 100." in wrong.checks[0].reason
    assert "No such file" in wrong.checks[1].reason
    recorded = read_results(tmp_path / "results.jsonl")
    assert {r.id for r in recorded} == {"squares", "wrong"}
    assert Path(squares.transcript).is_file()


def test_sha256_check_and_a_crashing_and_a_slow_task_do_not_stop_the_batch(tmp_path):
    require("bubblewrap")
    body = " ".join(str(i * i) for i in range(10)).encode()
    script = tmp_path / "slow.yaml"
    script.write_text(
        'completions:\n  - "<|channel|>analysis to=python code<|message|>import time; time.sleep(30)<|call|>"\n'
    )
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        textwrap.dedent(f"""
        tools: [python]
        tasks:
          - id: hashed
            model: scripted:{HERE / "tasks" / "squares_script.yaml"}
            task: squares
            checks:
              - file_sha256: {{path: squares.txt, sha256: {hashlib.sha256(body).hexdigest()}}}
          - id: broken
            model: nonsense-model-spec
            task: x
          - id: slow
            model: scripted:slow.yaml
            task: wait
            timeout: 2
    """)
    )
    started = time.monotonic()
    hashed, broken, slow = asyncio.run(
        run_batch(load_task_file(tasks), make_agent, results=tmp_path / "r.jsonl", concurrency=3)
    )
    assert hashed.passed and hashed.checks[0].passed
    assert not broken.passed and "could not build the agent" in broken.error
    assert not slow.passed and slow.stop_reason == "timeout" and "timeout of 2 s" in slow.error
    assert time.monotonic() - started < 25


def test_repeat_reports_a_pass_rate(tmp_path):
    spec = TaskSpec(id="flip", task="x", checks=[{"answer_equals": "yes"}])
    answers = iter(["yes", "no", "yes", "yes"])

    def agent_for(spec, transcript):
        return Agent(ScriptedModel([final(next(answers))]))

    results = asyncio.run(run_batch([spec], agent_for, results=tmp_path / "r.jsonl", repeat=4))
    assert [r.repeat for r in results] == [1, 2, 3, 4]
    assert summary(results)["tasks"]["flip"] == {"runs": 4, "passed": 3, "pass_rate": 0.75}


def test_a_killed_batch_loses_no_finished_result_and_resume_skips_them(tmp_path):
    results = tmp_path / "results.jsonl"
    script = tmp_path / "batch.py"
    script.write_text(
        textwrap.dedent(f"""
        import asyncio, sys
        sys.path[:0] = [{str(HERE.parent)!r}, {str(HERE)!r}]
        from harmony_agent import Agent, PolicyModel
        from harmony_agent.runs.batch import run_batch
        from harmony_agent.runs.tasks import TaskSpec

        def policy(messages):
            import time
            text = messages[-1].content[0].text
            if text == "hang":
                time.sleep(120)
            return "<|channel|>final<|message|>" + text + "<|return|>"

        specs = [TaskSpec(id=f"t{{i}}", task=("hang" if i == 3 else f"answer {{i}}")) for i in range(5)]
        asyncio.run(run_batch(specs, lambda spec, t: Agent(PolicyModel(policy)), results={str(results)!r}))
    """)
    )
    process = subprocess.Popen([sys.executable, str(script)])
    deadline = time.monotonic() + 60
    while len(read_results(results)) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    kept = read_results(results)
    assert [r.id for r in kept] == ["t0", "t1", "t2"] and all(r.passed for r in kept)

    calls = []

    def agent_for(spec, transcript):
        calls.append(spec.id)
        return Agent(ScriptedModel([final(spec.task)]))

    specs = [TaskSpec(id=f"t{i}", task=f"answer {i}") for i in range(5)]
    everything = asyncio.run(run_batch(specs, agent_for, results=results, resume=True))
    assert calls == ["t3", "t4"]
    assert [r.id for r in everything] == ["t0", "t1", "t2", "t3", "t4"]
    assert [r.id for r in read_results(results)] == ["t0", "t1", "t2", "t3", "t4"]


def test_variables_in_a_task_file(tmp_path, monkeypatch):
    path = tmp_path / "vars.yaml"
    path.write_text("task: open ${SITE}/page\napps: ['app=${PYTHON} ${TASK_DIR}/app.py']\ninstructions: ${GREETING}\n")
    monkeypatch.setenv("GREETING", "Be brief.")
    [spec] = load_task_file(path, {"SITE": "http://127.0.0.1:9"})
    assert spec.task == "open http://127.0.0.1:9/page" and spec.instructions == "Be brief."
    assert spec.apps == [f"app={sys.executable} {tmp_path}/app.py"]
    path.write_text("task: ${NOT_SET_ANYWHERE}\n")
    with pytest.raises(TaskFileError, match=r"\$\{NOT_SET_ANYWHERE\} is not set"):
        load_task_file(path)
