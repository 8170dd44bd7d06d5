"""The browser tool's cost: open and find on a local site, one session and several at once.

Measures, in one run against ``examples/site`` served on 127.0.0.1:
- Chromium's bare ``page.goto`` of the same pages (the floor any open pays), and a bare ``Page.navigate`` over
  DevTools with a wait in the page for its load (how the tool navigates, without its policy or its view);
- ``browser.open`` by URL through the tool (navigate, load, read the view, extract, render): median and p95;
- the same with a screenshot of every view;
- ``browser.find`` on an open page;
- several sessions opening pages at once, against one session.

    .venv/bin/python benchmarks/browser.py [--opens 60] [--sessions 4] [--quick] [--site-in-process]

The site runs in a process of its own, as any real site does; ``--site-in-process`` serves it from a thread of
this process instead (as before), where the site's Python and the tool's proxy take turns with one lock.

``--quick`` (12 opens, 2 sessions) checks in CI that the script still runs and prints its ratios.

``browser.open`` is also shown in its parts: navigate (``Page.navigate`` on the page's own DevTools session,
through the policy proxy, until the new document commits), load (one round trip that waits in the page for its
load and reads the text view then, if the page is settled), settle and snapshot (only for a page not settled at
its load), extraction (reader mode and lines) and rendering the view. The bare goto and the tool's navigation
are then split by the pages' own Navigation Timing (read after the clock stops): until the request is sent, the
response (the tool's through the proxy), the document's load (its subresources through the proxy, the injected
scripts), and what comes after the load (Playwright or the tool telling this process; the tool's view included).
The three are measured in turn on the same page, each in a tab of its own, in all six orders in turn (so each
goes first, and follows each other, as often), each after a short pause so it does not pay for its predecessor's
leftover work.

Target: open median <= 1.3x the bare goto's median, measured side by side (interleaved).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.local_site import serve_site
from harmony_agent.tools import ToolCall
from harmony_agent.tools.browser import BrowserTool, NavigationPolicy
from harmony_agent.tools.browser.engine import BrowserEngine
from harmony_agent.tools.browser.scripts import LOADED

#: The pause before each timed step of the interleaved runs.
QUIET_S = 0.03
PAGES = ["/index.html", "/hours.html", "/about.html", "/fees.html", "/history.html", "/search-catalog"]


@contextlib.contextmanager
def site_process() -> Iterator[str]:
    """The example site served by a process of its own; yields its base URL."""
    root = Path(__file__).resolve().parent.parent
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "examples.local_site"], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        found = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline())
        assert found, "the site did not say where it serves"
        yield found.group(0)
    finally:
        server.terminate()
        server.wait(timeout=10)


def policy() -> NavigationPolicy:
    return NavigationPolicy(allow_domains=["127.0.0.1"], allow_addresses=["127.0.0.1"])


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"median {statistics.median(times) * 1000:6.1f} ms, p95 {p95 * 1000:6.1f} ms ({len(times)})"


async def timed_opens(tool: BrowserTool, base: str, count: int) -> list[float]:
    times = []
    for index in range(count):
        url = base + PAGES[index % len(PAGES)]
        started = time.perf_counter()
        result = await tool.process(ToolCall("browser.open", "analysis", json.dumps({"id": url})))
        times.append(time.perf_counter() - started)
        assert not result.is_error, result.text()
    return times


PARTS = ("navigate", "load", "settle", "snapshot", "extract", "render")
# Navigation Timing of the page just loaded, in ms from the start of its navigation.
TIMING = """() => { const n = performance.getEntriesByType("navigation")[0];
  return n ? [n.requestStart, n.responseEnd, n.loadEventEnd] : null; }"""
STAGES = ("to request", "response", "load", "after the load")


def stages(timing: list[float] | None, seconds: float) -> list[float] | None:
    """A goto of ``seconds`` split at the page's request start, response end and load end (all in s)."""
    if not timing:
        return None
    request, response, load = (value / 1000 for value in timing)
    return [request, response - request, load - response, seconds - load]


async def interleaved(
    tool: BrowserTool, base: str, count: int
) -> tuple[list[float], list[float], list[float], dict[str, list[float]], dict[str, list[list[float]]]]:
    """A bare ``page.goto``, a bare ``Page.navigate`` and a ``browser.open`` of the same page, each in a tab of its
    own, in all six orders in turn, so all three see the same machine load and each goes first as often."""
    engine = BrowserEngine.shared()
    engine.acquire()
    browser = await engine.browser()
    contexts = [await browser.new_context(), await browser.new_context()]
    page, navigated_page = [await context.new_page() for context in contexts]
    devtools = await contexts[1].new_cdp_session(navigated_page)
    gotos, navigates, opens = [], [], []
    parts: dict[str, list[float]] = {part: [] for part in PARTS}

    async def goto(url: str) -> None:
        started = time.perf_counter()
        await page.goto(url, wait_until="load")
        gotos.append(time.perf_counter() - started)

    async def navigate(url: str) -> None:
        started = time.perf_counter()
        await devtools.send("Page.navigate", {"url": url})
        # The tool's own wait for the load; in a tab without the tool's hooks it is a bare wait for pageshow.
        await devtools.send("Runtime.evaluate", {"expression": LOADED, "awaitPromise": True})
        navigates.append(time.perf_counter() - started)

    async def open_(url: str) -> None:
        started = time.perf_counter()
        result = await tool.process(ToolCall("browser.open", "analysis", json.dumps({"id": url})))
        opens.append(time.perf_counter() - started)
        assert not result.is_error, result.text()
        for part in PARTS:
            parts[part].append(tool.timings.get(part, 0.0))

    split: dict[str, list[list[float]]] = {"bare": [], "tool": []}
    orders = list(itertools.permutations([goto, navigate, open_]))  # each runs first, and after each other, alike
    for index in range(count):
        url = base + PAGES[index % len(PAGES)]
        for step in orders[index % len(orders)]:
            # What the last one left for Chromium to do (painting the page it loaded) is done before the next clock.
            await asyncio.sleep(QUIET_S)
            await step(url)
        assert tool.session is not None
        navigated = parts["navigate"][-1] + parts["load"][-1]
        for name, timed, seconds in (("bare", page, gotos[-1]), ("tool", tool.session.page, navigated)):
            stage = stages(await timed.evaluate(TIMING), seconds)
            if stage is not None:
                split[name].append(stage)
    for context in contexts:
        await context.close()
    await engine.release()
    return gotos, navigates, opens, parts, split


async def run(base: str, opens: int, sessions: int) -> None:
    warm = BrowserTool(policy=policy())
    await timed_opens(warm, base, 6)  # launch and warm up
    goto, navigate, single, parts, split = await interleaved(warm, base, opens)
    with tempfile.TemporaryDirectory() as shots:
        pictured = BrowserTool(policy=policy(), screenshots=shots)
        with_shots = await timed_opens(pictured, base, opens)
        await pictured.aclose()
    finds = []
    await warm.process(ToolCall("browser.open", "analysis", json.dumps({"id": base + "/history.html"})))
    for word in ["lighthouse", "Elsa", "railway", "festival", "storm"] * 4:
        started = time.perf_counter()
        await warm.process(ToolCall("browser.find", "analysis", json.dumps({"pattern": word, "cursor": 0})))
        finds.append(time.perf_counter() - started)

    tools = [BrowserTool(policy=policy()) for _ in range(sessions)]
    for tool in tools:
        await timed_opens(tool, base, 2)
    started = time.perf_counter()
    together = await asyncio.gather(*(timed_opens(tool, base, opens // sessions) for tool in tools))
    wall = time.perf_counter() - started
    for tool in tools:
        await tool.aclose()
    await warm.aclose()

    open_median = statistics.median(single) * 1000
    print(f"bare page.goto          {summary(goto)}")
    print(f"bare Page.navigate+load {summary(navigate)}  (over DevTools, as the tool navigates)")
    print(f"browser.open            {summary(single)}  ({open_median / (statistics.median(goto) * 1000):.2f}x goto)")
    for part in PARTS:
        print(f"  {part:<21} {summary(parts[part])}")
    accounted = statistics.median([sum(values) for values in zip(*parts.values())]) * 1000
    print(f"  {'rest (dispatch)':<21} median {open_median - accounted:6.1f} ms (open less the parts' sum)")
    print("the two gotos by the page's Navigation Timing (medians, ms):  bare   tool   tool - bare")
    for index, stage in enumerate(STAGES):
        bare, own = (statistics.median(row[index] for row in split[name]) * 1000 for name in ("bare", "tool"))
        print(f"  {stage:<21} {' ' * 38}{bare:6.1f} {own:6.1f} {own - bare:+7.1f}")
    print(f"browser.open + shot     {summary(with_shots)}")
    print(f"browser.find            {summary(finds)}")
    flat = [t for times in together for t in times]
    rate = len(flat) / wall
    print(
        f"{sessions} sessions at once    {summary(flat)}; {rate:.1f} opens/s together vs {1 / statistics.median(single):.1f} opens/s alone"
    )
    ratio = open_median / (statistics.median(goto) * 1000)
    print(f"target open median <= 1.3x goto: {'met' if ratio <= 1.3 else 'NOT met'} ({ratio:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opens", type=int, default=60)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="12 opens, 2 sessions")
    parser.add_argument("--site-in-process", action="store_true", help="serve the site from a thread of this process")
    args = parser.parse_args()
    if args.quick:
        args.opens, args.sessions = 12, 2
    if args.site_in_process:
        with serve_site() as (base, _hits):
            asyncio.run(run(base, args.opens, args.sessions))
    else:
        with site_process() as base:
            asyncio.run(run(base, args.opens, args.sessions))


if __name__ == "__main__":
    main()
