"""``harmony-agent demo``: short episodes through the real tools, checked, with a report at the end.

Stand-in policy models play gpt-oss (there are no weights on the machine
this must run on, and the demo says so); everything else is real: the python
sandbox, Chromium on the bundled local site served on 127.0.0.1, and a
desktop app on a virtual display. The task files, the policies, the site and
the app ship inside the package (:mod:`harmony_agent.runs.demo_kit`; a source
checkout shows the same files as ``examples/tasks/``), so the demo runs from
any folder and any install; the same files run with a real gpt-oss by naming
a model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from harmony_agent.runs.batch import BatchProgress, TaskResult, run_batch
from harmony_agent.runs.demo_kit import TASKS
from harmony_agent.runs.demo_kit.local_site import serve_site
from harmony_agent.runs.factory import TaskAgentFactory
from harmony_agent.runs.report import write_report
from harmony_agent.runs.tasks import TaskSpec, load_tasks

DEMO_TOOLS = ("python", "browser", "computer")


def demo_tasks(site: str, tools: tuple[str, ...] = DEMO_TOOLS) -> list[TaskSpec]:
    names = {"python": "python.yaml", "browser": "browser.yaml", "computer": "desktop.yaml"}
    files = [TASKS / names[tool] for tool in tools]
    return load_tasks(files, {"SITE": site})


def run_demo(
    output: Path,
    *,
    tools: tuple[str, ...] = DEMO_TOOLS,
    model: str | None = None,
    progress: Callable[[BatchProgress], None] | None = None,
) -> tuple[list[TaskResult], Path]:
    """Run the demo tasks one after the other; returns their results and the batch report's path."""
    with serve_site() as (site, _hits):
        specs = demo_tasks(site, tools)
        if model is not None:
            specs = [spec.model_copy(update={"model": model}) for spec in specs]
        results = asyncio.run(
            run_batch(
                specs,
                TaskAgentFactory(),
                results=output / "results.jsonl",
                transcripts=output / "runs",
                progress=progress,
            )
        )
    return results, write_report(output / "results.jsonl", output / "report.html")
