"""Task files and results files under attack: a YAML bomb, and a results file torn by a kill.

A 370-byte "billion laughs" under a valid key (``allow:``) must be refused
at once with exit 2, by every command that reads task files. A batch killed
mid-write leaves a torn last line; ``--resume`` sets it aside, so the next
finished result is not glued onto it and lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harmony_agent.runs.batch import TaskResult, append_record, read_results, run_batch
from harmony_agent.runs.factory import TaskAgentFactory
from harmony_agent.runs.tasks import TaskFileError, TaskSpec, load_task_file
from helpers import ROOT
from helpers.completions import final


def _bomb() -> str:
    text = 'task: hello\nallow:\n  - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for before, name in zip("abcdefgh", "bcdefghi"):
        text += f"  - &{name} [{','.join(['*' + before] * 9)}]\n"
    return text


def test_a_billion_laughs_is_refused_in_milliseconds(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb())
    assert len(bomb.read_bytes()) < 400
    started = time.perf_counter()
    with pytest.raises(TaskFileError, match="aliases expand"):
        load_task_file(bomb)
    assert time.perf_counter() - started < 0.5


def test_anchors_of_a_sensible_size_still_work(tmp_path):
    file = tmp_path / "tasks.yaml"
    file.write_text(
        "x-domains: &d [a.example, b.example]\ntasks:\n  - task: one\n    allow: *d\n  - task: two\n    allow: *d\n"
    )
    with pytest.raises(TaskFileError, match="x-domains"):  # an unknown key is still refused by name
        load_task_file(file)
    file.write_text("tasks:\n  - task: one\n    allow: &d [a.example, b.example]\n  - task: two\n    allow: *d\n")
    assert [spec.allow for spec in load_task_file(file)] == [["a.example", "b.example"]] * 2


def test_a_huge_task_file_is_refused_unread(tmp_path):
    file = tmp_path / "huge.yaml"
    file.write_text("task: hi\nnote: " + "x" * (2 << 20) + "\n")
    with pytest.raises(TaskFileError, match="KiB"):
        load_task_file(file)


@pytest.mark.parametrize("command", [["run", "--yes"], ["batch"]])
def test_the_cli_refuses_the_bomb_with_exit_2_and_one_line(tmp_path, command):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "harmony_agent.cli", command[0], str(bomb), *command[1:]]
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "aliases expand" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_scripted_models_script_is_read_by_the_same_guarded_reader(tmp_path):
    """``--model scripted:FILE`` reads YAML someone may have sent: the bomb, under a key the script ignores,
    is refused before it is built (it used to load, and run), in one line with exit 2."""
    from harmony_agent.models import ModelError, ScriptedModel

    script = tmp_path / "script.yaml"
    script.write_text(f"completions:\n  - {json.dumps(final('hi'))}\n" + _bomb().replace("task: hello\n", ""))
    started = time.perf_counter()
    with pytest.raises(ModelError, match="aliases expand"):
        ScriptedModel.from_file(script)
    assert time.perf_counter() - started < 0.5
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "harmony_agent.cli", "run", "--model", f"scripted:{script}", "hi"]
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "aliases expand" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""


def _spec(tmp_path: Path, name: str) -> TaskSpec:
    script = tmp_path / f"{name}.json"
    script.write_text(json.dumps([final(f"{name} done")]))
    return TaskSpec(id=name, task="go", model=f"scripted:{script}", checks=[{"answer_contains": "done"}])


def test_resume_after_a_torn_last_line_keeps_every_finished_result(tmp_path):
    results = tmp_path / "results.jsonl"
    first, second = _spec(tmp_path, "first"), _spec(tmp_path, "second")
    asyncio.run(run_batch([first], TaskAgentFactory(), results=results))
    with results.open("a") as file:  # a kill in the middle of writing the next record
        file.write('{"id": "second", "repeat": 1, "passed": tr')
    asyncio.run(run_batch([first, second], TaskAgentFactory(), results=results, resume=True))
    recorded = read_results(results)
    assert [(r.id, r.passed) for r in recorded] == [("first", True), ("second", True)]
    assert results.read_text().endswith("\n") and len(results.read_text().splitlines()) == 2
    assert (tmp_path / "results.jsonl.torn").read_text().startswith('{"id": "second"')


@pytest.mark.slow  # kills writer processes
def test_a_killed_writer_never_leaves_a_torn_record(tmp_path):
    """A process appending large records is killed at random moments; every line left is whole."""
    results = tmp_path / "results.jsonl"
    writer = (
        "import sys\nfrom pathlib import Path\nfrom harmony_agent.runs.batch import TaskResult, append_record\n"
        "record = TaskResult(id='big', passed=True, final_text='x' * 200_000).model_dump_json()\n"
        "print('ready', flush=True)\n"
        "while True:\n    append_record(Path(sys.argv[1]), record)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen(
            [sys.executable, "-c", writer, str(results)], env=env, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
    # A kill can cut the last write short; only that last line may be torn, and readers skip it.
    *whole, last = results.read_text().splitlines(keepends=True)
    assert whole and all(TaskResult.model_validate_json(line).id == "big" for line in whole)
    assert [r.id for r in read_results(results)] == ["big"] * (len(whole) + last.endswith("\n"))
    # The next record never lands on torn text: every line is whole again.
    append_record(results, TaskResult(id="after", passed=True).model_dump_json())
    lines = results.read_text().splitlines(keepends=True)
    assert all(line.endswith("\n") for line in lines)
    assert [TaskResult.model_validate_json(line).id for line in lines][-1] == "after"
    assert len(lines) == len(whole) + 1 + last.endswith("\n")


def test_append_record_writes_a_whole_line(tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, '{"id": "a", "passed": true}')
    append_record(path, '{"id": "b", "passed": false}\n')
    assert [r.id for r in read_results(path)] == ["a", "b"]
