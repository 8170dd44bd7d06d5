"""Citations for people: the pages an answer cites, from the run's own browser views, in results and the CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from harmony_agent import Agent, ScriptedModel
from harmony_agent.citations import cite_html, sources
from harmony_agent.cli.app import app
from harmony_agent.events import Source
from harmony_agent.tools import BrowserTool
from harmony_agent.tools.browser import NavigationPolicy
from helpers.available import require
from helpers.pages import serve_pages

PAGE = "<title>Opening hours</title><p>The library opens at nine.</p><p>It closes at six.</p>"


def _source(cursor: int, url: str | None, lines: str) -> Source:
    return Source(cursor=cursor, url=url, lines=lines)


def _completions(url: str) -> list[str]:
    return [
        f'<|channel|>analysis to=browser.open <|constrain|>json<|message|>{{"id": "{url}"}}<|call|>',
        "<|channel|>final<|message|>It opens at nine【0†L0-L1】 and closes at six【0†L1】; see also【5†L2】.<|return|>",
    ]


def test_sources_are_listed_once_each_in_order_and_unknown_pages_say_so():
    text = "a【2†L4-L9】 b【7†L1】 c【2†L4-L9】 d【2†L10】 not a citation【x†L1】"
    assert sources(text, {2: "http://a.example/x"}) == [
        _source(2, "http://a.example/x", "L4-L9"),
        _source(7, None, "L1"),
        _source(2, "http://a.example/x", "L10"),
    ]
    assert sources("", {}) == []
    assert 'href="http://a.example/x"' in cite_html(text, {2: "http://a.example/x"})


async def test_a_run_result_names_the_pages_its_answer_cites():
    require("chromium")
    with serve_pages({"/hours": PAGE}) as base:
        browser = BrowserTool(policy=NavigationPolicy(allow_addresses=["127.0.0.1"]))
        agent = Agent(ScriptedModel(_completions(f"{base}/hours")), tools=[browser])
        try:
            result = await agent.arun("When is the library open?")
        finally:
            await agent.aclose()
    assert result.ok, result.error
    assert result.sources == [
        _source(0, f"{base}/hours", "L0-L1"),
        _source(0, f"{base}/hours", "L1"),
        _source(5, None, "L2"),
    ]


async def test_a_later_turn_can_cite_a_page_an_earlier_turn_showed():
    require("chromium")
    with serve_pages({"/hours": PAGE}) as base:
        browser = BrowserTool(policy=NavigationPolicy(allow_addresses=["127.0.0.1"]))
        script = _completions(f"{base}/hours") + ["<|channel|>final<|message|>As I read before: six【0†L1】.<|return|>"]
        agent = Agent(ScriptedModel(script), tools=[browser])
        try:
            first = await agent.arun("When is the library open?")
            second = await agent.arun("When does it close?", previous=first)
        finally:
            await agent.aclose()
    assert second.ok and second.sources == [_source(0, f"{base}/hours", "L1")]


def test_the_cli_prints_the_sources_under_the_answer_and_in_json(tmp_path, monkeypatch):
    require("chromium")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    with serve_pages({"/hours": PAGE}) as base:
        script = tmp_path / "script.json"
        script.write_text(json.dumps({"completions": _completions(f"{base}/hours")}))
        common = [
            "run",
            "When is the library open?",
            "-m",
            f"scripted:{script}",
            "-t",
            "browser",
            "--allow",
            "127.0.0.1",
            "--yes",
        ]
        shown = CliRunner().invoke(app, common)
        printed = CliRunner().invoke(app, [*common, "--json"])
    assert shown.exit_code == 0, shown.output
    assert "sources:" in shown.output and f"【0†L0-L1】 {base}/hours" in shown.output
    assert "【5†L2】 (a page not shown in this conversation)" in shown.output
    result = json.loads(printed.stdout.strip().splitlines()[-1])
    assert result["sources"][0] == {"cursor": 0, "url": f"{base}/hours", "lines": "L0-L1"}
    assert result["sources"][2] == {"cursor": 5, "url": None, "lines": "L2"}
