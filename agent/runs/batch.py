"""Batch runs: many tasks, each in a session of its own, checked, recorded as they finish.

Every task gets its own agent and session (its own sandbox, browser context
and display), all released when it ends, whatever happened. A task that
fails, raises or runs past its ``timeout`` is recorded and the batch goes on.
Each result is appended to the results file (JSON lines) the moment it is
known, so an interrupted batch (Ctrl-C, SIGTERM, even SIGKILL) loses no
finished result, and ``resume`` skips what is already there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from pydantic import BaseModel, ValidationError

from harmony_agent.agent import Agent
from harmony_agent.events import Usage
from harmony_agent.results import RunResult
from harmony_agent.runs.checks import CheckOutcome, check_task
from harmony_agent.runs.tasks import TaskSpec

#: Builds the agent for one task; the path is where its transcript goes (or None).
AgentFactory = Callable[[TaskSpec, "Path | None"], Agent]


class TaskResult(BaseModel):
    """One run of one task, as the results file records it."""

    id: str
    repeat: int = 1
    passed: bool
    checks: list[CheckOutcome] = []
    stop_reason: str | None = None
    final_text: str | None = None
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_s: float = 0.0
    error: str | None = None
    transcript: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        return self.id, self.repeat


@dataclass
class BatchProgress:
    """Counts for a live display: how many are waiting, running, passed and failed, and for how long."""

    total: int
    running: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    started: float = field(default_factory=time.monotonic)
    last: TaskResult | None = None

    @property
    def done(self) -> int:
        return self.passed + self.failed

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


def read_results(path: str | os.PathLike[str]) -> list[TaskResult]:
    """The results recorded in a results file; a torn last line (a killed batch) is skipped."""
    results = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        if not line.strip():
            continue
        try:
            results.append(TaskResult.model_validate_json(line))
        except ValidationError:
            continue
    return results


def append_record(path: Path, line: str) -> None:
    """Append one JSON line so that no kill can leave a torn record among whole ones.

    The line goes out in one system-level write (no buffer to split it) and is
    fsynced before it counts as recorded. A kill can still cut that write short
    (Linux stops a large write between pages for SIGKILL), leaving a torn tail;
    so a tail without its newline is first set aside to ``.torn``, and the new
    line never lands on torn text. Readers skip a torn last line.
    """
    set_aside_torn_line(path)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):  # a short write (a full disk): finish it, or fail loudly
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def set_aside_torn_line(path: Path) -> Path | None:
    """Move a torn last line (a batch killed mid-write) to ``results.jsonl.torn``; returns where, or None.

    Without this, the next result would be appended onto the torn text and
    both would be lost. The file is cut back to its last complete line.
    """
    try:
        with path.open("rb") as file:  # the last byte says whether there is a torn tail: no need to read it all
            if file.seek(0, os.SEEK_END) == 0:
                return None
            file.seek(-1, os.SEEK_END)
            if file.read(1) == b"\n":
                return None
            data = path.read_bytes()
    except FileNotFoundError:
        return None
    cut = data.rfind(b"\n") + 1
    aside = path.with_name(path.name + ".torn")
    with aside.open("ab") as file:
        file.write(data[cut:] + b"\n")
    with path.open("r+b") as file:
        file.truncate(cut)
        file.flush()
        os.fsync(file.fileno())
    return aside


class Ledger:
    """A batch's bookkeeping, shared by the local and the Ray runner: the jobs, what a resumed batch
    already has, the results file (appended as each result is known), the progress counts."""

    def __init__(
        self,
        specs: list[TaskSpec],
        *,
        results: str | os.PathLike[str],
        transcripts: str | os.PathLike[str] | None,
        repeat: int,
        resume: bool,
        progress: Callable[[BatchProgress], None] | None,
    ) -> None:
        if repeat < 1:
            raise ValueError("repeat must be at least 1")
        self.path = Path(results)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Absolute, so the transcripts (and the screenshots beside them) are found from any folder later.
        self.transcripts = Path(transcripts).resolve() if transcripts is not None else None
        if self.transcripts is not None:
            self.transcripts.mkdir(parents=True, exist_ok=True)
        if resume:
            set_aside_torn_line(self.path)
        self.done = {r.key: r for r in read_results(self.path)} if resume else {}
        if not resume and self.path.exists():
            self.path.unlink()  # a fresh batch starts a fresh file; resume keeps it
        self.repeat = repeat
        self.jobs = [(spec, n) for spec in specs for n in range(1, repeat + 1)]
        self.state = BatchProgress(total=len(self.jobs))
        self.finished: dict[tuple[str, int], TaskResult] = {}
        self._progress = progress

    def report(self) -> None:
        if self._progress is not None:
            self._progress(self.state)

    def resumed(self, spec: TaskSpec, number: int) -> bool:
        """Whether this job's result is already known (then it is counted, not run again)."""
        key = (spec.id or "", number)
        if key not in self.done:
            return False
        self._count(self.done[key])
        self.state.skipped += 1
        self.report()
        return True

    def transcript(self, spec: TaskSpec, number: int) -> Path | None:
        suffix = f"-{number}" if self.repeat > 1 else ""
        return self.transcripts / f"{spec.id}{suffix}.jsonl" if self.transcripts is not None else None

    def fresh_transcript(self, spec: TaskSpec, number: int) -> Path | None:
        """The job's transcript path, with what an earlier batch left there removed (its transcript, report and
        screenshots): transcripts append, and a re-run into the same folder must show this run once, alone."""
        path = self.transcript(spec, number)
        if path is not None:
            path.unlink(missing_ok=True)
            path.with_suffix(".html").unlink(missing_ok=True)
            shutil.rmtree(path.with_suffix(".screenshots"), ignore_errors=True)
        return path

    def record(self, outcome: TaskResult) -> None:
        """A finished job: appended to the results file at once, then counted."""
        append_record(self.path, outcome.model_dump_json())
        self.state.running -= 1
        self.state.last = outcome
        self._count(outcome)
        self.report()

    def _count(self, outcome: TaskResult) -> None:
        self.finished[outcome.key] = outcome
        self.state.passed += outcome.passed
        self.state.failed += not outcome.passed

    def ordered(self) -> list[TaskResult]:
        return [self.finished[(spec.id or "", n)] for spec, n in self.jobs]


async def run_batch(
    specs: list[TaskSpec],
    make_agent: AgentFactory,
    *,
    results: str | os.PathLike[str],
    transcripts: str | os.PathLike[str] | None = None,
    concurrency: int = 1,
    repeat: int = 1,
    resume: bool = False,
    progress: Callable[[BatchProgress], None] | None = None,
) -> list[TaskResult]:
    """Run every task ``repeat`` times, ``concurrency`` at a time; returns this batch's results in task order."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    ledger = Ledger(specs, results=results, transcripts=transcripts, repeat=repeat, resume=resume, progress=progress)
    gate = asyncio.Semaphore(concurrency)

    async def one(spec: TaskSpec, number: int) -> None:
        if ledger.resumed(spec, number):
            return
        async with gate:
            ledger.state.running += 1
            ledger.report()
            ledger.record(await run_task(spec, make_agent, ledger.fresh_transcript(spec, number), number))

    await asyncio.gather(*(one(spec, n) for spec, n in ledger.jobs))
    return ledger.ordered()


class _Identity(TypedDict):
    """The fields every TaskResult of one run shares, typed so that ``TaskResult(**base, ...)`` checks."""

    id: str
    repeat: int
    transcript: str | None


async def run_task(spec: TaskSpec, make_agent: AgentFactory, transcript: Path | None, number: int = 1) -> TaskResult:
    """One task, start to end: the agent, the turn (within its timeout), the checks, then close everything."""
    started = time.monotonic()
    base: _Identity = {"id": spec.id or "task", "repeat": number, "transcript": str(transcript) if transcript else None}
    try:
        agent = make_agent(spec, transcript)
    except Exception as exc:  # a bad model spec or tool: this task fails, the batch goes on
        return TaskResult(**base, passed=False, error=f"could not build the agent: {exc}")
    try:
        session = agent.session()
        try:
            result = await asyncio.wait_for(session.arun(spec.task), spec.timeout)
        except asyncio.TimeoutError:
            error = f"the task ran past its timeout of {spec.timeout:g} s"
            return TaskResult(
                **base,
                passed=False,
                checks=await _checks_after_timeout(spec, session, error),
                stop_reason="timeout",
                wall_s=time.monotonic() - started,
                error=error,
            )
        checks = await check_task(spec.checks, result, session, spec.folder)
        passed = result.stop_reason == "final" and all(c.passed for c in checks)
        return TaskResult(
            **base,
            passed=passed,
            checks=checks,
            stop_reason=result.stop_reason,
            final_text=result.final_text,
            steps=result.steps,
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            wall_s=time.monotonic() - started,
            error=result.error,
        )
    except Exception as exc:  # a crash inside the task is its result, not the batch's end
        return TaskResult(**base, passed=False, wall_s=time.monotonic() - started, error=f"{type(exc).__name__}: {exc}")
    finally:
        await agent.aclose()


#: Seconds the checks of a timed-out task may take (its tools may still be busy with what timed out).
CHECKS_AFTER_TIMEOUT_S = 30.0


async def _checks_after_timeout(spec: TaskSpec, session: Any, error: str) -> list[CheckOutcome]:
    """Each check's outcome for a run cut off by its timeout: the session's tools are still open, so file and
    screen checks look at what was done; answer checks fail with the reason. Bounded: the checks cannot hang."""
    partial = RunResult(final_text=None, stop_reason="timeout", steps=0, usage=Usage(), messages=[], error=error)
    try:
        return await asyncio.wait_for(check_task(spec.checks, partial, session, spec.folder), CHECKS_AFTER_TIMEOUT_S)
    except asyncio.TimeoutError:
        reason = (
            f"the check could not run: the task's tools were still busy {CHECKS_AFTER_TIMEOUT_S:g} s after it timed out"
        )
        return [CheckOutcome(check=check.describe(), passed=False, reason=reason) for check in spec.checks]


class TaskSummary(TypedDict):
    """One task id's runs in :func:`summary`."""

    runs: int
    passed: int
    pass_rate: float


class Summary(TaskSummary):
    """What :func:`summary` returns: the overall counts, and each task id's under ``tasks``."""

    tasks: dict[str, TaskSummary]


def summary(results: list[TaskResult]) -> Summary:
    """Pass counts and rates per task id (for ``repeat``), and overall."""
    by_id: dict[str, list[TaskResult]] = {}
    for result in results:
        by_id.setdefault(result.id, []).append(result)
    rows: dict[str, TaskSummary] = {
        task: {
            "runs": len(runs),
            "passed": sum(r.passed for r in runs),
            "pass_rate": sum(r.passed for r in runs) / len(runs),
        }
        for task, runs in by_id.items()
    }
    total = len(results)
    return {
        "tasks": rows,
        "runs": total,
        "passed": sum(r.passed for r in results),
        "pass_rate": (sum(r.passed for r in results) / total) if total else 0.0,
    }
