"""Batch fan-out on Ray: each task is a Ray task, scheduled on a node that has the tools it needs.

A task asks for one unit-fraction of a custom resource per tool it uses
(``harmony_python``, ``harmony_browser``, ``harmony_computer``), so Ray
places it on a node that advertises them: start nodes with, for example,
``ray start --address HEAD --resources '{"harmony_python": 8, "harmony_browser": 4}'``.
A local instance started here advertises what this machine has. Results come
back as each task finishes, into the same results file and report as a local
batch. Transcripts are written by the worker, so on several machines they
need a shared folder.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harmony_agent.runs.batch import AgentFactory, BatchProgress, Ledger, TaskResult, run_task
from harmony_agent.runs.tasks import TaskSpec

RESOURCE_PREFIX = "harmony_"


def task_resources(spec: TaskSpec) -> dict[str, float]:
    """The custom resources a task asks for: a sliver of one per built-in tool it uses."""
    return {f"{RESOURCE_PREFIX}{tool}": 0.01 for tool in spec.tools if tool in ("python", "browser", "computer")}


def _run_remote(
    spec_json: str, folder: str | None, make_agent: AgentFactory, transcript: str | None, number: int
) -> dict[str, Any]:
    spec = TaskSpec.model_validate_json(spec_json)
    spec._folder = Path(folder) if folder else None
    result = asyncio.run(run_task(spec, make_agent, Path(transcript) if transcript else None, number))
    return result.model_dump()


def run_batch_on_ray(
    specs: list[TaskSpec],
    make_agent: AgentFactory,
    *,
    results: str | os.PathLike[str],
    transcripts: str | os.PathLike[str] | None = None,
    repeat: int = 1,
    resume: bool = False,
    address: str | None = None,
    local_resources: dict[str, float] | None = None,
    progress: Callable[[BatchProgress], None] | None = None,
) -> list[TaskResult]:
    """Run a batch on Ray (``address`` of a cluster, or a local instance); blocks until every task is done."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                resources=local_resources or {f"{RESOURCE_PREFIX}{t}": 64 for t in ("python", "browser", "computer")},
                include_dashboard=False,
                log_to_driver=False,
            )
    ledger = Ledger(specs, results=results, transcripts=transcripts, repeat=repeat, resume=resume, progress=progress)
    remote = ray.remote(_run_remote)
    pending: dict[Any, tuple[str, int]] = {}
    try:
        for spec, number in ledger.jobs:
            if ledger.resumed(spec, number):
                continue
            transcript = ledger.fresh_transcript(spec, number)
            ref = remote.options(resources=task_resources(spec), num_cpus=0.5).remote(
                spec.model_dump_json(),
                str(spec.folder) if spec.folder else None,
                make_agent,
                str(transcript) if transcript else None,
                number,
            )
            pending[ref] = (spec.id or "", number)
        ledger.state.running = len(pending)
        ledger.report()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            key = pending.pop(ready[0])
            try:
                outcome = TaskResult.model_validate(ray.get(ready[0]))
            except Exception as exc:  # the worker died: the task failed, the batch goes on
                outcome = TaskResult(id=key[0], repeat=key[1], passed=False, error=f"the Ray task failed: {exc}")
            ledger.record(outcome)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
    return ledger.ordered()
