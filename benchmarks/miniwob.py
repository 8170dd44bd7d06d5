"""MiniWoB++ through the browser tool's text view, beside Playwright driven by selectors, on the same episodes.

For each task and seed, in one run:
- **text view**: ``Agent`` + ``PolicyModel(examples.miniwob.text_policy)`` +
  ``BrowserTool``; the policy reads only the tool's text output;
- **selectors**: Playwright with CSS selectors written for each task's DOM
  (the ceiling a text view is measured against).

Success is MiniWoB's own raw reward 1.0 (``WOB_RAW_REWARD_GLOBAL``). Pages
come from the ``miniwob`` package, served on 127.0.0.1; episodes are seeded
(``Math.seedrandom``) so both players get the same problem, which the
benchmark checks by comparing the instructions they saw.

    .venv/bin/python benchmarks/miniwob.py [--seeds 5] [--tasks click-button,email-inbox] [--quick]

``--quick`` (one seed of three tasks) checks in CI that the script still runs and prints its table.

Target: >= 95% of episodes solved through the text view.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.miniwob import (
    EPISODE_SECONDS,
    REWARD_SCRIPT,
    SKIPPED,
    TASKS,
    episode_url,
    run_text_episode,
    serve_miniwob,
)
from harmony_agent.tools.browser.engine import BrowserEngine


async def _query(page: Any) -> str:
    return await page.evaluate("core.getUtterance()")


async def _solve_by_selectors(page: Any, task: str) -> None:
    """What a script that knows each task's DOM does; the utterance is parsed the same way a person would."""
    q = await _query(page)
    if task == "click-button":
        name = re.search(r'Click on the "(.+?)" button', q).group(1)
        await page.locator("#area button", has_text=re.compile(rf"^{re.escape(name)}$")).first.click()
    elif task == "click-link":
        name = re.search(r'Click on the link "(.+?)"\.', q).group(1)
        await page.locator("#area span.alink", has_text=re.compile(rf"^{re.escape(name)}$")).first.click()
    elif task == "click-dialog":
        await page.locator(".ui-dialog-titlebar-close").click()
    elif task in ("click-checkboxes", "click-option"):
        listed = re.search(r"Select (.*?) and click Submit", q).group(1)
        wanted = set() if listed == "nothing" else set(re.split(r", | and ", listed))
        for label in await page.locator("#boxes label").all():
            if (await label.inner_text()).strip() in wanted:
                await label.locator("input").check()
        await page.locator("#subbtn").click()
    elif task == "click-tab":
        tab = re.search(r"Click on (Tab #\d+)", q).group(1)
        await page.locator("#area a", has_text=tab).first.click()
    elif task == "click-collapsible":
        await page.locator("#area h3").first.click()
        await page.locator("#area .ui-accordion-content").first.wait_for(state="visible")
        await page.locator("#subbtn").click()
    elif task == "enter-text":
        await page.locator("#tt").fill(re.search(r'Enter "(.*?)"', q).group(1))
        await page.locator("#subbtn").click()
    elif task == "enter-password":
        word = re.search(r'password "(.*?)"', q).group(1)
        await page.locator("#password").fill(word)
        await page.locator("#verify").fill(word)
        await page.locator("#subbtn").click()
    elif task == "focus-text":
        await page.locator("#tt").focus()
    elif task == "login-user":
        user, word = re.search(r'username "(.*?)" and the password "(.*?)"', q).groups()
        await page.locator("#username").fill(user)
        await page.locator("#password").fill(word)
        await page.locator("#subbtn").click()
    elif task == "choose-list":
        await page.locator("#area select").select_option(label=re.search(r"Select (.*?) from the list", q).group(1))
        await page.locator("#area button").click()
    elif task == "use-autocomplete":
        start, end = re.search(r'starts with "(.*?)"(?: and ends with "(.*?)")?', q).groups()
        await page.locator("#tags").press_sequentially(start)
        items = page.locator(".ui-autocomplete li")
        await items.first.wait_for(state="visible")
        for item in await items.all():
            text = (await item.inner_text()).strip()
            if text.startswith(start) and text.endswith(end or ""):
                await item.click()
                break
        await page.locator("#subbtn").click()
    elif task == "navigate-tree":
        name = re.search(r'named "(.*?)"', q).group(1)
        while not await page.locator("#tree span:visible", has_text=re.compile(rf"^{re.escape(name)}$")).count():
            await page.locator("#tree .expandable-hitarea:visible").first.click()
        await page.locator("#tree span:visible", has_text=re.compile(rf"^{re.escape(name)}$")).first.click()
    elif task == "search-engine":
        term, position = re.search(r'enter "(.*?)" and press "Search", then find and click the (\d+)', q).groups()
        await page.locator("#search-text").fill(term)
        await page.locator("#search").click()
        index = int(position) - 1
        if index >= 3:
            await page.locator("#pagination a", has_text=re.compile(rf"^{index // 3 + 1}$")).click()
        await page.locator(f'#page-content a[data-result="{index}"]').click()
    elif task == "email-inbox":
        await _email_by_selectors(page, q)
    elif task in CONTROL_TASKS:
        await _controls_by_selectors(page, task, q)
    else:
        raise ValueError(f"no selector oracle for {task}")


CONTROL_TASKS = ("click-scroll-list", "enter-date", "enter-time", "terminal", "use-spinner", "click-button-sequence")


async def _controls_by_selectors(page: Any, task: str, q: str) -> None:
    """The control tasks as a script that knows their DOM does them: values set directly, clicks dispatched."""
    if task == "click-scroll-list":
        names = re.search(r"Select (.*?) from the scroll list", q).group(1).split(", ")
        await page.locator("#options").select_option(label=names)
        await page.locator("#area button").click()
    elif task == "enter-date":
        month, day, year = re.search(r"Enter (\d+)/(\d+)/(\d+)", q).groups()
        await page.locator("#tt").fill(f"{year}-{month}-{day}")
        await page.locator("#subbtn").click()
    elif task == "enter-time":
        written = re.search(r"Enter (.+?) as the time", q).group(1)
        await page.locator("#tt").fill(datetime.strptime(written, "%I:%M %p").strftime("%H:%M"))
        await page.locator("#subbtn").click()
    elif task == "terminal":
        target = page.locator("#terminal-target")
        await target.press_sequentially("ls")
        await target.press("Enter")
        files = (await page.locator("#terminal-contents .output").last.inner_text()).split()
        m = re.search(r"extension \.(\S+)", q)
        name = next(f for f in files if (f.endswith("." + m.group(1)) if m else "." not in f))
        await target.press_sequentially(f"rm {name}")
        await target.press("Enter")
    elif task == "use-spinner":
        await page.locator("#spinner").fill(re.search(r"Select (-?\d+) with", q).group(1))
        await page.locator("#subbtn").click()
    elif task == "click-button-sequence":  # the buttons may overlap: click events, not the mouse
        await page.locator("#subbtn").dispatch_event("click")
        await page.locator("#subbtn2").dispatch_event("click")


async def _email_by_selectors(page: Any, q: str) -> None:
    sender = re.search(r"Find the email by (.+?) and", q).group(1)
    row = page.locator(
        "#main .email-thread", has=page.locator(".email-sender", has_text=re.compile(rf"^{re.escape(sender)}$"))
    ).first
    if "trash" in q or "star" in q:
        await row.locator(".trash" if "trash" in q else ".star").click()
        return
    await row.click()
    if "forward" in q:
        await page.locator("#email .email-forward").click()
        await page.locator("#forward .forward-sender").fill(re.search(r"forward that email to (.+?)\.$", q).group(1))
        await page.locator("#send-forward").click()
    else:
        await page.locator("#email .email-reply").click()
        await page.locator("#reply-text").fill(re.search(r'with the text "(.*)"', q).group(1))
        await page.locator("#send-reply").click()


async def run_selector_episode(browser: Any, base: str, task: str, seed: int) -> dict[str, Any]:
    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(5000)
    started = time.perf_counter()
    error = ""
    try:
        await page.goto(episode_url(base, task, seed), wait_until="load")
        await page.locator("#sync-task-cover").click()
        await _solve_by_selectors(page, task)
        await page.wait_for_function("WOB_DONE_GLOBAL", timeout=5000)
    except Exception as exc:  # a failed episode, not a failed benchmark
        error = str(exc).splitlines()[0]
    try:
        done, reward, utterance = await page.evaluate(REWARD_SCRIPT)
    except Exception as exc:
        done, reward, utterance = False, None, ""
        error = error or str(exc).splitlines()[0]
    await context.close()
    return {
        "task": task,
        "seed": seed,
        "solved": bool(done) and reward == 1,
        "reward": reward,
        "utterance": utterance,
        "seconds": time.perf_counter() - started,
        "error": error,
    }


async def run(tasks: list[str], seeds: list[int], verbose: bool) -> float:
    engine = BrowserEngine.shared()
    engine.acquire()
    browser = await engine.browser()
    text_results, selector_results = [], []
    with serve_miniwob() as base:
        for task in tasks:
            for seed in seeds:
                selector_results.append(await run_selector_episode(browser, base, task, seed))
                started = time.perf_counter()
                result = await run_text_episode(base, task, seed)
                result["seconds"] = time.perf_counter() - started
                text_results.append(result)
                if verbose:
                    print(
                        f"  {task} seed {seed}: text {'ok' if result['solved'] else 'FAIL'} ({result['steps']} calls), "
                        f"selectors {'ok' if selector_results[-1]['solved'] else 'FAIL'}",
                        flush=True,
                    )
    await engine.release()

    print(f"MiniWoB++ ({len(tasks)} tasks x {len(seeds)} seeds, episode limit raised to {EPISODE_SECONDS} s for both)")
    print(f"{'task':22} {'text view':>10} {'selectors':>10} {'calls':>6} {'ms/call':>8}")
    for task in tasks:
        mine = [r for r in text_results if r["task"] == task]
        theirs = [r for r in selector_results if r["task"] == task]
        calls = [len(r["latencies"]) for r in mine]
        per_call = [t for r in mine for t in r["latencies"]]
        print(
            f"{task:22} {sum(r['solved'] for r in mine):>4}/{len(mine):<5} {sum(r['solved'] for r in theirs):>4}/{len(theirs):<5}"
            f" {statistics.mean(calls):6.1f} {statistics.median(per_call) * 1000:8.1f}"
        )
    mismatched = [
        (a["task"], a["seed"]) for a, b in zip(text_results, selector_results) if a["utterance"] != b["utterance"]
    ]
    solved = sum(r["solved"] for r in text_results)
    ceiling = sum(r["solved"] for r in selector_results)
    latencies = sorted(t for r in text_results for t in r["latencies"])
    print(
        f"text view: {solved}/{len(text_results)} episodes solved ({100 * solved / len(text_results):.1f}%); "
        f"selectors: {ceiling}/{len(selector_results)} ({100 * ceiling / len(selector_results):.1f}%)"
    )
    both = [a["solved"] for a, b in zip(text_results, selector_results) if b["solved"]]
    if both:
        print(
            f"on the {len(both)} episodes the selectors solved, the text view solved {sum(both)} "
            f"({100 * sum(both) / len(both):.1f}%; target >= 99%)"
        )
    print(
        f"tool call latency: median {statistics.median(latencies) * 1000:.1f} ms, "
        f"p95 {latencies[int(0.95 * (len(latencies) - 1))] * 1000:.1f} ms over {len(latencies)} calls"
    )
    print(
        f"episodes per player: text view {statistics.mean(r['seconds'] for r in text_results):.2f} s, "
        f"selectors {statistics.mean(r['seconds'] for r in selector_results):.2f} s (mean)"
    )
    if mismatched:
        print(f"WARNING: the players saw different problems in {mismatched}")
    for result in text_results:
        if not result["solved"]:
            print(
                f"  failed (text view): {result['task']} seed {result['seed']}: reward {result['reward']}, "
                f"stop {result['stop']}: {result['utterance']}"
            )
    for result in selector_results:
        if not result["solved"]:
            print(f"  failed (selectors): {result['task']} seed {result['seed']}: {result['error']}")
    print("skipped tasks (not text-solvable): " + ", ".join(f"{name} ({why})" for name, why in sorted(SKIPPED.items())))
    rate = solved / len(text_results)
    print(f"target >= 95% solved through the text view: {'met' if rate >= 0.95 else 'NOT met'} ({100 * rate:.1f}%)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per task (1..N)")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--quick", action="store_true", help="one seed of click-button, choose-list, enter-text")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.tasks = 1, "click-button,choose-list,enter-text"
    asyncio.run(run(args.tasks.split(","), list(range(1, args.seeds + 1)), args.verbose))


if __name__ == "__main__":
    main()
