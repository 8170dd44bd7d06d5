"""Reports as a reader meets them, in headless Chromium: screenshots that load, runs shown once, no hostile links.

The demo writes into a relative output folder (the default), the report is
then written again from another folder, and a transcript someone sent you
cites ``javascript:`` and ``data:`` pages and names host files as images.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from harmony_agent import events as ev
from harmony_agent.runs.batch import read_results, run_batch
from harmony_agent.runs.factory import TaskAgentFactory
from harmony_agent.runs.report import write_report
from harmony_agent.runs.tasks import TaskSpec
from helpers.available import require
from helpers.completions import final


@pytest.fixture
def chromium_page():
    """Opens headless Chromium when called (after any asyncio.run: Playwright's sync API holds a loop)."""
    require("chromium")
    from playwright.sync_api import sync_playwright

    from harmony_agent.tools.browser.engine import find_chromium

    opened = []

    def start():
        playwright = sync_playwright().start()
        browser = playwright.chromium.launch(executable_path=find_chromium(), headless=True)
        opened.append((playwright, browser))
        page = browser.new_page()
        page.route(
            "**/*",
            lambda route: route.continue_() if route.request.url.startswith(("file:", "data:")) else route.abort(),
        )
        return page

    yield start
    for playwright, browser in opened:
        browser.close()
        playwright.stop()


def _images(page) -> list[int]:
    return page.locator("img").evaluate_all("images => images.map(i => i.complete ? i.naturalWidth : -1)")


@pytest.mark.slow  # opens the report in Chromium
def test_the_demo_report_shows_its_screenshots_from_a_relative_folder_and_from_elsewhere(
    tmp_path, monkeypatch, chromium_page
):
    from harmony_agent.runs.demo import run_demo

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    results, report = run_demo(Path("runs/demo"), tools=("browser",))
    assert results[0].passed, (results[0].error, results[0].checks)
    monkeypatch.chdir(elsewhere)  # the report written again from another folder, with a relative source
    report = write_report(os.path.relpath(work / "runs/demo/results.jsonl"), work / "runs/demo/report.html")

    page = chromium_page()
    page.goto(report.resolve().as_uri())
    page.locator("a", has_text="browser-research").click()
    page.wait_for_load_state()
    assert page.url.endswith("/runs/demo/runs/browser-research.html")
    widths = _images(page)
    assert widths and all(width > 0 for width in widths), widths
    assert "missing" not in page.inner_text("body")


def _scripted_task(tmp_path: Path) -> TaskSpec:
    script = tmp_path / "answer.json"
    script.write_text(json.dumps([final("done")]))
    return TaskSpec(id="quick", task="say done", model=f"scripted:{script}")


def test_a_batch_run_again_into_the_same_folder_shows_each_run_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = _scripted_task(tmp_path)
    for _ in range(2):
        asyncio.run(
            run_batch([spec], TaskAgentFactory(), results=Path("out/results.jsonl"), transcripts=Path("out/runs"))
        )
    transcript = Path(read_results("out/results.jsonl")[0].transcript)
    starts = [line for line in transcript.read_text().splitlines() if '"run_start"' in line]
    assert len(starts) == 1
    assert len(read_results("out/results.jsonl")) == 1
    page = write_report("out/results.jsonl").read_text()
    assert page.count(">quick<") == 1


def test_a_chat_transcript_of_two_turns_gives_each_turn_its_own_time(tmp_path):
    events = []
    for start in (1000.0, 2000.0):  # two turns, 1000 s apart, each 1.5 s long
        events += [
            ev.RunStartEvent(task="t", model="m", time=start),
            ev.FinalEvent(text="ok", time=start + 1),
            ev.RunEndEvent(stop_reason="final", steps=1, usage=ev.Usage(), final_text="ok", time=start + 1.5),
        ]
    transcript = tmp_path / "chat.jsonl"
    transcript.write_text("".join(e.model_dump_json() + "\n" for e in events))
    text = write_report(transcript).read_text()
    assert "3.0 s in 2 turns" in text and "1001" not in text


def _hostile_transcript(folder: Path) -> Path:
    secret = folder.parent / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n not for the report")
    views = [
        "[0] Evil (javascript:window.__ran=1)\nL0: run me",
        "[1] Data (data:text/html,<script>parent.__ran=2</script>)\nL0: me too",
        "[2] Fine (https://example.org/ok)\nL0: fine",
    ]
    events = [ev.RunStartEvent(task="<script>window.__ran=3</script>", model="m", tools=["browser"])]
    for number, view in enumerate(views):
        events.append(
            ev.ToolResultEvent(
                call_id=str(number),
                recipient="browser.open",
                content=view,
                images=[str(secret), "../secret.png", "/etc/passwd"],
            )
        )
    answer = "See 【0†L0】, 【1†L0】 and 【2†L0】 <img src=x onerror=window.__ran=4>"
    events += [
        ev.FinalEvent(text=answer),
        ev.RunEndEvent(stop_reason="final", steps=1, usage=ev.Usage(), final_text=answer),
    ]
    transcript = folder / "sent-to-you.jsonl"
    transcript.write_text("".join(e.model_dump_json() + "\n" for e in events))
    return transcript


@pytest.mark.slow  # opens the report in Chromium
def test_a_hostile_transcript_gives_a_report_that_runs_nothing_and_reads_no_host_file(tmp_path, chromium_page):
    folder = tmp_path / "inbox"
    folder.mkdir()
    report = write_report(_hostile_transcript(folder))
    text = report.read_text()
    assert "not for the report" not in text and "base64" not in text  # no file outside its folder was embedded
    page = chromium_page()
    page.goto(report.as_uri())
    hrefs = page.locator("a").evaluate_all("links => links.map(a => a.href)")
    assert hrefs == ["https://example.org/ok"]
    final_text = page.locator(".final")
    for label in ("[0, L0]", "[1, L0]"):
        final_text.get_by_text(label, exact=False).first.click()
    page.wait_for_timeout(300)
    assert page.evaluate("window.__ran") is None
    assert page.url == report.as_uri()


def test_a_hostile_results_file_names_no_host_file_to_read_or_write_beside(tmp_path):
    outside = tmp_path / "home"
    outside.mkdir()
    victim = outside / "notes.jsonl"
    victim.write_text(ev.RunStartEvent(task="private", model="m").model_dump_json() + "\n")
    batch = tmp_path / "inbox"
    (batch / "runs").mkdir(parents=True)
    (batch / "runs" / "garbled.jsonl").write_text("not a transcript\n")
    lines = [
        {"id": "outside", "passed": True, "transcript": str(victim)},
        {"id": "climb", "passed": True, "transcript": "../home/notes.jsonl"},
        {"id": "garbled", "passed": False, "transcript": "runs/garbled.jsonl"},
    ]
    (batch / "results.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    page = write_report(batch / "results.jsonl").read_text()
    assert not (outside / "notes.html").exists()  # nothing written beside a file outside the batch's folder
    assert "private" not in page and page.count("<a ") == 0
    assert all(name in page for name in ("outside", "climb", "garbled"))
