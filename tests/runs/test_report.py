"""HTML reports, opened in real headless Chromium: a browser run with screenshots and citations, and a batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

from harmony_agent import Agent, ScriptedModel
from harmony_agent.citations import cite_html
from harmony_agent.runs.batch import run_batch
from harmony_agent.runs.report import write_report
from harmony_agent.runs.tasks import TaskSpec
from helpers import ROOT
from helpers.available import require
from helpers.completions import final

ARTIFACTS = ROOT / "test-artifacts"


def open_in_chromium(path: Path, shot: str):
    from playwright.sync_api import sync_playwright

    from harmony_agent.tools.browser.engine import find_chromium

    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=find_chromium(), headless=True)
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    page.route(
        "**/*",
        lambda route: route.abort() if not route.request.url.startswith(("file:", "data:")) else route.continue_(),
    )
    page.goto(path.as_uri())
    return playwright, browser, page


def test_citations_become_links_to_the_cited_pages():
    html = cite_html("See 【2†L4-L9】 and 【7†L1】 <b>", {2: "http://a.example/x"})
    assert '<a href="http://a.example/x" title="http://a.example/x">[2, L4–L9]</a>' in html
    assert "[7, L1]" in html and "&lt;b&gt;" in html


def test_run_report_shows_steps_reasoning_tool_results_screenshots_and_linked_citations(tmp_path):
    require("chromium")
    from examples.local_site import serve_site
    from harmony_agent.tools.browser import BrowserTool, NavigationPolicy

    with serve_site() as (base, _hits):
        url = f"{base}/hours.html"
        model = ScriptedModel(
            [
                "<|channel|>analysis<|message|>Open the hours page.<|end|><|start|>assistant"
                f'<|channel|>analysis to=browser.open <|constrain|>json<|message|>{{"id": "{url}"}}<|call|>',
                final("The library opens at the times listed 【0†L1-L3】."),
            ]
        )
        browser = BrowserTool(
            policy=NavigationPolicy(allow_domains=["127.0.0.1"], allow_addresses=["127.0.0.1"]),
            screenshots=tmp_path / "run.screenshots",
        )
        transcript = tmp_path / "run.jsonl"
        with Agent(model, tools=[browser], transcript=transcript) as agent:
            result = agent.run("When is the library open?")
        assert result.ok, result.error
    report = write_report(transcript)
    text = report.read_text()
    assert "data:image/jpeg;base64," in text or "data:image/png;base64," in text  # the screenshot is inside the file
    assert f'<a href="{url}"' in text
    playwright, chromium, page = open_in_chromium(report, "run")
    try:
        assert page.inner_text("h1") == "When is the library open?"
        assert "→ browser.open" in page.inner_text("body")
        reasoning = page.locator("details.reasoning").first
        assert not reasoning.evaluate("d => d.open")
        reasoning.locator("summary").click()
        assert reasoning.evaluate("d => d.open") and "Open the hours page." in reasoning.inner_text()
        assert page.locator("img").count() >= 1 and page.locator("img").first.evaluate("i => i.naturalWidth") > 0
        assert page.locator(".final a").get_attribute("href") == url
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "run-report.png"), full_page=True)
    finally:
        chromium.close()
        playwright.stop()


def test_batch_report_links_each_run(tmp_path):
    require("chromium")
    specs = [
        TaskSpec(id="good", task="a", checks=[{"answer_equals": "yes"}]),
        TaskSpec(id="bad", task="b", checks=[{"answer_contains": "yes"}]),
    ]
    answers = {"good": "yes", "bad": "no"}

    def agent_for(spec, transcript):
        return Agent(ScriptedModel([final(answers[spec.id])]), transcript=transcript)

    asyncio.run(run_batch(specs, agent_for, results=tmp_path / "results.jsonl", transcripts=tmp_path / "runs"))
    report = write_report(tmp_path / "results.jsonl")
    assert (tmp_path / "runs" / "good.html").is_file()
    playwright, chromium, page = open_in_chromium(report, "batch")
    try:
        assert "1 of 2 passed" in page.inner_text("body")
        rows = page.locator("tbody tr")
        assert (
            rows.count() == 2
            and "fail" in rows.nth(1).inner_text()
            and "the answer was 'no'" in rows.nth(1).inner_text()
        )
        page.click("text=good")
        assert page.inner_text("h1") == "a" and "yes" in page.inner_text(".final")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "batch-report-run.png"), full_page=True)
    finally:
        chromium.close()
        playwright.stop()
