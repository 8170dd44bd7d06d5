"""Batch throughput: tasks per minute at concurrency 1, 4 and 16, with the python tool and with the browser,
and the same python batch on a local Ray instance, side by side in one run.

Each task is a scripted two-step episode (one tool call, then the answer) with
a check, so the figures are the framework's: a session per task (sandbox or
browser context start and close), the loop, the checks, the results file.

The browser rows come three times at each concurrency: with a Chromium
launched per task (``BrowserTool(shared_browser=False)``, how it was before
the runtime), with the process's one Chromium (each task a context in it)
without a spare context, and as by default, with the next task's context and
page made ready while tasks run. Each row says how many Chromium browser
processes it launched (and the most at once) and how many renderer processes
(a context's pages run in one), and its rate against the per-task row of the
same concurrency; with the CPU time per task of this process and everything it started, and how many
times less that is than per task (steadier than the rates when other work shares the machine). Each row starts with no Chromium running, so the shared rows
pay their first launch too. The header names the Chromium binary
(``HARMONY_AGENT_CHROMIUM`` picks another).

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
    """Counts this process's Chromium browser processes, and their renderer processes, while a row runs."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.peak = 0
        self.renderers: set[int] = set()
        self._looked: set[int] = set()
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
                    elif child.pid not in self._looked and "chrom" in child.name():
                        if "--type=renderer" in child.cmdline():
                            self.renderers.add(child.pid)
                        elif "--type=zygote" not in child.cmdline():  # a renderer is a zygote's fork a moment
                            self._looked.add(child.pid)
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


def tree_cpu() -> float:
    """CPU seconds used by this process and its descendants (Chromium, Playwright's driver), those that ended
    and were reaped included: steadier than wall time on a machine that other work keeps busy."""
    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def close_shared_chromium(spares: bool = True) -> None:
    """No Chromium left running between rows: each row pays its own first launch; the next row's engine keeps
    a spare context or not."""
    from harmony_agent.sandboxes.runtime import runtime
    from harmony_agent.tools.browser.engine import BrowserEngine

    for engine in list(BrowserEngine._instances.values()):
        runtime().run(engine.shutdown())
        engine.keep_spares = spares
    BrowserEngine.KEEP_SPARES = spares


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
            plan += [("browser, one Chromium, no spare", "browser", None, concurrency)]
            plan += [("browser, one Chromium (default)", "browser", True, concurrency)]
    with tempfile.TemporaryDirectory() as folder, serve_site() as (site, _hits):
        out = Path(folder)
        for number, (name, tool, shared, concurrency) in enumerate(plan):
            results = out / f"{number}.jsonl"
            answer = "45" if tool == "python" else "09:00"
            factory = Factory(tool, site, shared_browser=shared is not False)
            batch = functools.partial(
                run_batch, specs(args.tasks, answer), factory, results=results, concurrency=concurrency
            )
            close_shared_chromium(spares=shared is not None)
            cpu = tree_cpu()
            with ChromiumCounter() as chromium:
                rate, passed = timed(lambda batch=batch: asyncio.run(batch()))
            cpu = (tree_cpu() - cpu) / args.tasks
            launched = f"{len(chromium.seen)} ({chromium.peak} at once)" if tool == "browser" else "-"
            renderers = str(len(chromium.renderers)) if tool == "browser" else "-"
            rows.append((name, concurrency, rate, passed, launched, renderers, cpu))
        if not args.no_ray and args.only != "browser":
            from harmony_agent.runs.ray import run_batch_on_ray

            rate, passed = timed(
                lambda: run_batch_on_ray(specs(args.tasks, "45"), Factory("python"), results=out / "ray.jsonl")
            )
            rows.append(("python, Ray (start-up included)", "cluster", rate, passed, "-", "-", float("nan")))
    close_shared_chromium()
    print_table(rows, args.tasks)


def print_table(rows: list[tuple], tasks: int) -> None:
    from harmony_agent.tools.browser.chromium import find_chromium

    print(f"Chromium: {find_chromium(headless=True)}")
    print(
        f"{'batch':<34} {'concurrency':>11} {'tasks/min':>10} {'passed':>7} {'Chromium launched':>18} "
        f"{'renderers':>9} {'CPU s/task':>10} {'vs per task':>11} {'CPU vs':>7}"
    )
    per_task = per_task_cpu = None
    for name, concurrency, rate, passed, launched, renderers, cpu in rows:
        if name.endswith("per task"):
            per_task, per_task_cpu = rate, cpu
        shared = per_task and "one Chromium" in name
        ratio = f"{rate / per_task:>10.2f}x" if shared else ""
        cpu_ratio = f"{per_task_cpu / cpu:>6.2f}x" if shared else ""
        print(
            f"{name:<34} {concurrency!s:>11} {rate:>10.1f} {passed:>4}/{tasks} {launched:>18} {renderers:>9} "
            f"{cpu:>10.2f} {ratio:>11} {cpu_ratio:>7}"
        )


if __name__ == "__main__":
    main()
