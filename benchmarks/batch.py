"""Batch throughput: tasks per minute at concurrency 1, 4 and 16, with the python tool and with the browser,
and the same python batch on a local Ray instance, side by side in one run.

Each task is a scripted two-step episode (one tool call, then the answer) with
a check, so the figures are the framework's: a session per task (sandbox or
browser context start and close), the loop, the checks, the results file.

The browser rows come twice: with the process's one Chromium (each task a
context in it, the default) and with a Chromium launched per task
(``BrowserTool(shared_browser=False)``, how it was before the runtime), with
how many Chromium processes each row launched and the most at once. Each row
starts with no Chromium running, so the shared rows pay their first launch too.

    .venv/bin/python benchmarks/batch.py [--tasks N] [--no-ray] [--only browser|python] [--quick]

``--quick`` runs 4 tasks at concurrency 1 and 4 and skips Ray (its start-up alone takes most of a minute),
so CI can check the script still runs and prints its ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

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

    def __init__(self, tool: str, site: str | None = None, *, shared_browser: bool = True) -> None:
        self.tool, self.site, self.shared_browser = tool, site, shared_browser

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
        tool = BrowserTool(policy=policy, shared_browser=self.shared_browser)
        return Agent(PolicyModel(browse), tools=[tool], transcript=transcript)


def specs(count: int, answer: str) -> list[TaskSpec]:
    return [TaskSpec(id=f"t{i}", task="go", checks=[{"answer_contains": answer}]) for i in range(count)]


def timed(run) -> tuple[float, int]:
    started = time.perf_counter()
    results = run()
    elapsed = time.perf_counter() - started
    return len(results) / elapsed * 60, sum(r.passed for r in results)


class ChromiumCounter:
    """Counts this process's Chromium browser processes (not their renderers) while a row runs."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            now = set()
            for child in me.children(recursive=True):
                try:
                    # A browser process is Playwright's driver's child (Chromium's own children, a moment
                    # after fork, still carry the browser's name and arguments).
                    parent = child.parent()
                    if "chrom" in child.name() and parent is not None and parent.name().startswith("node"):
                        now.add(child.pid)
                except psutil.Error:
                    continue
            self.seen |= now
            self.peak = max(self.peak, len(now))
            self._stop.wait(0.05)

    def __enter__(self) -> ChromiumCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def close_shared_chromium() -> None:
    """No Chromium left running between rows: each row pays its own first launch."""
    from harmony_agent.sandboxes.runtime import runtime
    from harmony_agent.tools.browser.engine import BrowserEngine

    for engine in list(BrowserEngine._instances.values()):
        runtime().run(engine.shutdown())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--only", choices=("browser", "python"))
    parser.add_argument("--quick", action="store_true", help="4 tasks, concurrency 1 and 4, no Ray")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.no_ray = 4, True
    levels = (1, 4) if args.quick else (1, 4, 16)
    from examples.local_site import serve_site

    rows = []
    plan = []
    if args.only != "browser":
        plan += [("python", "python", True, c) for c in levels]
    if args.only != "python":
        for concurrency in levels:
            plan += [("browser, Chromium per task", "browser", False, concurrency)]
            plan += [("browser, one Chromium", "browser", True, concurrency)]
    with tempfile.TemporaryDirectory() as folder, serve_site() as (site, _hits):
        out = Path(folder)
        for number, (name, tool, shared, concurrency) in enumerate(plan):
            results = out / f"{number}.jsonl"
            answer = "45" if tool == "python" else "09:00"
            factory = Factory(tool, site, shared_browser=shared)
            batch = functools.partial(
                run_batch, specs(args.tasks, answer), factory, results=results, concurrency=concurrency
            )
            close_shared_chromium()
            with ChromiumCounter() as chromium:
                rate, passed = timed(lambda batch=batch: asyncio.run(batch()))
            launched = f"{len(chromium.seen)} ({chromium.peak} at once)" if tool == "browser" else "-"
            rows.append((name, concurrency, rate, passed, launched))
        if not args.no_ray and args.only != "browser":
            from harmony_agent.runs.ray import run_batch_on_ray

            rate, passed = timed(
                lambda: run_batch_on_ray(specs(args.tasks, "45"), Factory("python"), results=out / "ray.jsonl")
            )
            rows.append(("python, Ray (start-up included)", "cluster", rate, passed, "-"))
    close_shared_chromium()
    print(
        f"{'batch':<34} {'concurrency':>11} {'tasks/min':>10} {'passed':>7} {'Chromium launched':>18} {'vs row above':>12}"
    )
    previous = None
    for name, concurrency, rate, passed, launched in rows:
        ratio = f"{rate / previous:>11.2f}x" if previous and name.endswith("one Chromium") else ""
        print(f"{name:<34} {concurrency!s:>11} {rate:>10.1f} {passed:>4}/{args.tasks} {launched:>18} {ratio:>12}")
        previous = rate


if __name__ == "__main__":
    main()
