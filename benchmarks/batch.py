"""Batch throughput: tasks per minute at concurrency 1, 4 and 16, with the python tool and with the browser,
and the same python batch on a local Ray instance, side by side in one run.

Each task is a scripted two-step episode (one tool call, then the answer) with
a check, so the figures are the framework's: a session per task (sandbox or
browser context start and close), the loop, the checks, the results file.

    .venv/bin/python benchmarks/batch.py [--tasks N] [--no-ray] [--quick]

``--quick`` runs 4 tasks at concurrency 1 and 4 and skips Ray (its start-up alone takes most of a minute),
so CI can check the script still runs and prints its ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harmony_agent import Agent, PolicyModel
from harmony_agent.runs.batch import run_batch
from harmony_agent.runs.tasks import TaskSpec


def python_policy(messages):
    if messages[-1].author.role.value == "user":
        return "<|channel|>analysis to=python code<|message|>print(sum(range(10)))<|call|>"
    return "<|channel|>final<|message|>The sum is 45.<|return|>"


class Factory:
    """Picklable agent factory for both the local and the Ray batch."""

    def __init__(self, tool: str, site: str | None = None) -> None:
        self.tool, self.site = tool, site

    def __call__(self, spec, transcript):
        if self.tool == "python":
            from harmony_agent.tools import PythonTool

            return Agent(PolicyModel(python_policy), tools=[PythonTool(sandbox="bubblewrap")], transcript=transcript)
        from harmony_agent.tools.browser import BrowserTool, NavigationPolicy

        site = self.site

        def browse(messages):
            if messages[-1].author.role.value == "user":
                return f'<|channel|>analysis to=browser.open <|constrain|>json<|message|>{{"id": "{site}/hours.html"}}<|call|>'
            return "<|channel|>final<|message|>Open from 09:00.<|return|>"

        policy = NavigationPolicy(allow_domains=["127.0.0.1"], allow_addresses=["127.0.0.1"])
        return Agent(PolicyModel(browse), tools=[BrowserTool(policy=policy)], transcript=transcript)


def specs(count: int, answer: str) -> list[TaskSpec]:
    return [TaskSpec(id=f"t{i}", task="go", checks=[{"answer_contains": answer}]) for i in range(count)]


def timed(run) -> tuple[float, int]:
    started = time.perf_counter()
    results = run()
    elapsed = time.perf_counter() - started
    return len(results) / elapsed * 60, sum(r.passed for r in results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--quick", action="store_true", help="4 tasks, concurrency 1 and 4, no Ray")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.no_ray = 4, True
    python_levels = (1, 4) if args.quick else (1, 4, 16)
    from examples.local_site import serve_site

    rows = []
    with tempfile.TemporaryDirectory() as folder, serve_site() as (site, _hits):
        out = Path(folder)
        for tool, answer, levels in (("python", "45", python_levels), ("browser", "09:00", (1, 4))):
            for concurrency in levels:
                results = out / f"{tool}-{concurrency}.jsonl"
                batch = functools.partial(
                    run_batch, specs(args.tasks, answer), Factory(tool, site), results=results, concurrency=concurrency
                )
                rate, passed = timed(lambda batch=batch: asyncio.run(batch()))
                rows.append((f"{tool}, local", concurrency, rate, passed))
        if not args.no_ray:
            from harmony_agent.runs.ray import run_batch_on_ray

            rate, passed = timed(
                lambda: run_batch_on_ray(specs(args.tasks, "45"), Factory("python"), results=out / "ray.jsonl")
            )
            rows.append(("python, Ray (start-up included)", "cluster", rate, passed))
    base = rows[0][2]
    print(f"{'batch':<34} {'concurrency':>11} {'tasks/min':>10} {'passed':>7} {'vs python c=1':>14}")
    for name, concurrency, rate, passed in rows:
        print(f"{name:<34} {concurrency!s:>11} {rate:>10.1f} {passed:>4}/{args.tasks} {rate / base:>13.2f}x")


if __name__ == "__main__":
    main()
