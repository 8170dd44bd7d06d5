"""The browser tool on real Chromium against a local site on 127.0.0.1: views, cursors, actions, safety, recovery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path

import pytest

from examples.local_site import serve_site
from harmony_agent.tools import ToolCall
from harmony_agent.tools.browser import BrowserTool, LocalSearch, NavigationPolicy
from helpers import ROOT
from helpers.available import require
from helpers.cli_support import run_cli
from helpers.pages import serve_pages

SITE_FOLDER = ROOT / "examples" / "site"


@pytest.fixture(scope="module")
def site():
    with serve_site(slow_seconds=5) as served:
        yield served


def make_tool(base: str, tmp_path: Path, **options) -> BrowserTool:
    require("chromium")
    # Only the test site's own address is reachable; every other host is refused before any connection.
    policy = options.pop("policy", None) or NavigationPolicy(allow_domains=["127.0.0.1"], allow_addresses=["127.0.0.1"])
    return BrowserTool(
        LocalSearch(folder=SITE_FOLDER, base_url=base),
        policy=policy,
        screenshots=tmp_path / "shots",
        downloads=tmp_path / "downloads",
        **options,
    )


@pytest.fixture
async def browser(site, tmp_path):
    tool = make_tool(site[0], tmp_path)
    yield tool
    await tool.aclose()


async def call(tool: BrowserTool, name: str, **arguments):
    return await tool.process(ToolCall(f"browser.{name}", "analysis", json.dumps(arguments)))


def link_id(view: str, text: str) -> int:
    match = re.search(r"【(\d+)†" + re.escape(text), view)
    assert match, f"no link {text!r} in:\n{view}"
    return int(match.group(1))


def line_of(view: str, text: str) -> int:
    match = re.search(r"^L(\d+): .*" + re.escape(text), view, re.MULTILINE)
    assert match, f"no line with {text!r} in:\n{view}"
    return int(match.group(1))


async def test_search_open_find_follow_a_link_fill_a_form_and_read_the_result(browser, site):
    base, _hits = site
    results = await call(browser, "search", query="catalog search lighthouse")
    assert results.text().startswith("[0] Search results for `catalog search lighthouse`")
    home = await call(browser, "open", id=link_id(results.text(), "Harbor Town Library"))
    assert home.text().startswith(f"[1] Harbor Town Library ({base}/index.html)")
    assert "**viewing lines [0 - " in home.text() and "L4: Welcome to the Harbor Town Library" in home.text()
    found = await call(browser, "find", pattern="partner")
    assert "# 【0†match at L" in found.text() and "Partner libraries†example.org" in found.text()
    form = await call(browser, "open", id=link_id(home.text(), "Catalog search"), cursor=1)
    assert form.metadata["url"] == f"{base}/search-catalog"
    view = form.text()
    title_box = int(re.search(r"【(\d+)†input \"Title contains\"", view).group(1))
    typed = await call(browser, "type", id=title_box, text="lighthouse")
    assert '= "lighthouse"' in typed.text()
    fmt = int(re.search(r"【(\d+)†select \"Format\"", typed.text()).group(1))
    chose = await call(browser, "select", id=fmt, option="Book")
    assert '"Format" = Book' in chose.text()
    box = int(re.search(r"【(\d+)†checkbox \[ \]", chose.text()).group(1))
    ticked = await call(browser, "check", id=box)
    assert "checkbox [x] Available now only" in ticked.text()
    button = int(re.search(r"【(\d+)†button: Search the catalog", ticked.text()).group(1))
    answer = await call(browser, "click", id=button)
    assert "1 result(s) for “lighthouse”" in answer.text()
    assert "The Lighthouse Keeper | book | yes" in answer.text()
    assert "Lighthouse Engineering" not in answer.text()  # not available: the checkbox took effect
    back = await call(browser, "back")
    assert back.metadata["url"] == f"{base}/search-catalog" and "result(s)" not in back.text()


async def test_typing_with_submit_and_pressing_keys(browser, site):
    view = (await call(browser, "open", id=f"{site[0]}/search-catalog")).text()
    title_box = int(re.search(r"【(\d+)†input", view).group(1))
    submitted = await call(browser, "type", id=title_box, text="charts", submit=True)
    assert "Charts of the Northern Coast | map | yes" in submitted.text()
    view = submitted.text()
    title_box = int(re.search(r"【(\d+)†input", view).group(1))
    await call(browser, "type", id=title_box, text="songs")
    pressed = await call(browser, "press", key="Enter")
    assert "Lighthouse Songs | audio | yes" in pressed.text()


async def test_javascript_pages_tables_and_quirky_text_render_as_the_model_expects(browser, site):
    events = await call(browser, "open", id=f"{site[0]}/events.html")
    assert "* 2026-12-10: Knitting circle" in events.text()  # fetched and rendered by the page's script
    hours = await call(browser, "open", id=f"{site[0]}/hours.html")
    assert "Wednesday | 12:00 | 20:00" in hours.text() and "Day | Open | Close" in hours.text()
    quirks = await call(browser, "open", id=f"{site[0]}/quirks")
    assert "Brackets 〖like these〗 in text." in quirks.text()
    assert "†Dagger ‡ in a link】" in quirks.text()


async def test_cursor_semantics(browser, site):
    first = await call(browser, "search", query="opening hours", topn=1)
    assert first.text().count("* 【") == 1  # topn is honoured
    second = await call(browser, "search", query="fees")
    assert "Fees" in second.text()
    # An old cursor still shows its own page, not the newest search.
    again = await call(browser, "open", cursor=0)
    assert again.text().startswith("[2] Search results for `opening hours`")
    followed = await call(browser, "open", cursor=0, id=0)
    assert followed.metadata["url"].endswith("/hours.html")
    scrolled = await call(browser, "open", loc=4, num_lines=3)
    lines = re.findall(r"^L(\d+):", scrolled.text(), re.MULTILINE)
    assert lines == ["4", "5", "6"] and "**viewing lines [4 - 6] of" in scrolled.text()
    with pytest.raises(AssertionError):
        link_id(scrolled.text(), "nothing")
    bad = await call(browser, "open", cursor=99)
    assert bad.is_error and "there is no cursor 99" in bad.text()


async def test_a_long_article_is_read_in_views_and_find_opens_near_the_match(browser, site):
    first = await call(browser, "open", id=f"{site[0]}/history.html")
    total = int(re.search(r"of (\d+)\*\*", first.text()).group(1))
    shown = re.findall(r"^L(\d+):", first.text(), re.MULTILINE)
    assert total > 200 and len(shown) < total  # the view has a token budget
    assert first.metadata["source"] == "article"
    found = await call(browser, "find", pattern="Elsa Brandt")
    match_line = int(re.search(r"match at L(\d+)", found.text()).group(1))
    opened = await call(browser, "open", id=0)
    assert f"**viewing lines [{match_line - 4} - " in opened.text()
    assert f"L{match_line}: The library's founder, Elsa Brandt" in opened.text()
    end = await call(browser, "open", cursor=0, loc=total - 3)
    about = link_id(end.text(), "the library today")  # reader mode keeps the article's links, with the same ids
    followed = await call(browser, "open", id=about)
    assert followed.metadata["url"].endswith("/about.html")


@pytest.mark.parametrize(
    "url, reason",
    [
        ("file:///etc/passwd", "file scheme is not allowed"),
        ("data:text/html,<h1>hi</h1>", "data: URLs are not opened as pages"),
        ("javascript:alert(1)", "javascript scheme is not allowed"),
        ("chrome://settings", "chrome scheme is not allowed"),
        ("blob:http://127.0.0.1/abc", "blob: URLs are not opened as pages"),
        ("http://10.1.2.3/", "not on the allow list"),
    ],
)
async def test_navigation_to_blocked_kinds_is_refused(browser, site, url, reason):
    refused = await call(browser, "open", id=url)
    assert refused.is_error and reason in refused.text()


async def test_refusals_are_decided_before_connecting(site, tmp_path):
    base, hits = site
    policy = NavigationPolicy(
        deny_domains=["localhost"],
        allow_addresses=["127.0.0.1"],
        resolver=lambda host: ["127.0.0.1"] if host == "localhost" else [],
    )
    tool = make_tool(base, tmp_path, policy=policy)
    try:
        port = base.rsplit(":", 1)[1]
        redirected = await call(tool, "open", id=f"{base}/redirect?to=http://localhost:{port}/about.html?via-redirect")
        assert (
            redirected.is_error
            and "refused at http://localhost" in redirected.text()
            and "deny list" in redirected.text()
        )
        private = await call(tool, "open", id=f"{base}/redirect?to=http://10.1.2.3/")
        assert private.is_error and "private or reserved address (10.1.2.3)" in private.text()
        framed = await call(tool, "open", id=f"{base}/quirks?frame=http://localhost:{port}/fees.html?via-frame")
        assert not framed.is_error and tool.session.blocked_subresources >= 1
        # An HTTPS hop is refused by the interception (the proxy would see only its host and port).
        secure = await call(tool, "open", id=f"{base}/redirect?to=https://localhost:{port}/about.html?via-tls")
        assert secure.is_error and "refused at https://localhost" in secure.text() and "deny list" in secure.text()
        # The refused targets were never requested (only the pages that pointed at them were).
        assert not any(h.startswith(("/about.html?via-redirect", "/fees.html?via-frame")) for h in hits)
    finally:
        await tool.aclose()


async def test_a_click_that_leads_to_a_refused_page_says_why_and_the_tab_stays(site, tmp_path):
    base, hits = site
    port = base.rsplit(":", 1)[1]
    policy = NavigationPolicy(
        deny_domains=["localhost"],
        allow_addresses=["127.0.0.1"],
        resolver=lambda host: ["127.0.0.1"] if host == "localhost" else [],
    )
    links = (
        f'<title>Links</title><p><a href="http://localhost:{port}/about.html?via-click">plain</a></p>'
        f'<p><a href="https://localhost:{port}/about.html?via-tls-click">secure</a></p>'
    )
    tool = make_tool(base, tmp_path, policy=policy)
    try:
        with serve_pages({"/links": links}) as links_base:
            for text, scheme in (("plain", "http"), ("secure", "https")):
                view = await call(tool, "open", id=f"{links_base}/links")
                clicked = await call(tool, "click", id=link_id(view.text(), text))
                assert clicked.is_error, clicked.text()
                assert f"refused at {scheme}://localhost:{port}" in clicked.text()  # an HTTPS tunnel: host and port
                assert "deny list" in clicked.text()
                assert tool.session.page.url == f"{links_base}/links"  # back on the page the click was made on
        assert not any("click" in h for h in hits)
    finally:
        await tool.aclose()


def test_policy_decisions_for_addresses_domains_and_schemes():
    resolver = {"intranet.test": ["10.0.0.7"], "public.test": ["93.184.216.34"], "localhost": ["127.0.0.1"]}.get
    policy = NavigationPolicy(resolver=lambda host: resolver(host) or [])
    assert policy.check("https://public.test/page") is None
    assert policy.check("http://93.184.216.34/") is None
    for url in (
        "http://intranet.test/",
        "http://localhost:8000/",
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data",
        "http://192.168.1.1/",
        "http://0.0.0.0/",
    ):
        assert policy.check(url) is not None, url
    assert policy.check("data:image/png;base64,AAAA", top_level=False) is None  # inline images are fine
    assert policy.check("data:text/html,hi") is not None
    allowed = NavigationPolicy(
        allow_domains=["example.org"], deny_domains=["ads.example.org"], resolver=lambda host: ["93.184.216.34"]
    )
    assert allowed.check("https://docs.example.org/") is None
    assert "deny list" in allowed.check("https://ads.example.org/")
    assert "allow list" in allowed.check("https://example.com/")
    assert NavigationPolicy(allow_addresses=["127.0.0.1"]).check("http://127.0.0.1:9/") is None


async def test_a_page_that_does_not_load_in_time_is_reported_and_the_next_open_works(site, tmp_path):
    tool = make_tool(site[0], tmp_path, page_timeout=1)
    try:
        slow = await call(tool, "open", id=f"{site[0]}/slow")
        assert slow.is_error and "did not load within 1 s" in slow.text()
        fine = await call(tool, "open", id=f"{site[0]}/about.html")
        assert "84,000 books" in fine.text()
    finally:
        await tool.aclose()


async def test_a_crashed_page_and_a_dead_browser_are_restarted_and_the_model_is_told(browser, site):
    await call(browser, "open", id=f"{site[0]}/about.html")
    cdp = await browser.session.context.new_cdp_session(browser.session.page)
    with contextlib.suppress(Exception):  # the crash ends the session that asked for it
        await asyncio.wait_for(cdp.send("Page.crash"), 2)
    reopened = await call(browser, "open", id=f"{site[0]}/hours.html")
    assert not reopened.is_error and "page crashed and was reopened" in reopened.text()
    await (await browser.session.engine.browser()).close()
    relaunched = await call(browser, "open", id=f"{site[0]}/fees.html")
    assert not relaunched.is_error and "browser had stopped and was restarted" in relaunched.text()
    assert "Lost card | 3.00 EUR" in relaunched.text()


async def test_downloads_popups_and_screenshots(browser, site, tmp_path):
    fees = await call(browser, "open", id=f"{site[0]}/fees.html")
    assert fees.images and Path(fees.images[0]).read_bytes()[:2] == b"\xff\xd8"  # a JPEG of the view
    downloaded = await call(browser, "click", id=link_id(fees.text(), "Download the catalog"))
    saved = tmp_path / "downloads" / "catalog.csv"
    assert saved.read_text().startswith("id,title") and str(saved) in downloaded.files
    assert "download was saved" in downloaded.text()
    popup_page = await call(browser, "open", id=f"{site[0]}/popup")
    button = int(re.search(r"【(\d+)†button", popup_page.text()).group(1))
    clicked = await call(browser, "click", id=button)
    assert "popup" in clicked.text() and len(browser.session.context.pages) == 1


async def test_bad_calls_get_clear_errors(browser, site):
    assert "no page is open yet" in (await call(browser, "find", pattern="x")).text()
    assert "no live page to act on" in (await call(browser, "click", id=1)).text()
    home = await call(browser, "open", id=f"{site[0]}/")
    assert "has no link 99" in (await call(browser, "open", id=99)).text()
    assert "no element 99" in (await call(browser, "click", id=99)).text()
    assert "non-empty `pattern`" in (await call(browser, "find")).text()
    assert "whole number" in (await call(browser, "open", loc="middle")).text()
    assert "`id` must be a whole number" in (await call(browser, "open", id=1.5)).text()
    assert "`id` must be a whole number" in (await call(browser, "open", id=[1])).text()
    assert "no function 'dance'" in (await browser.process(ToolCall("browser.dance", "analysis", "{}"))).text()
    assert "not valid JSON" in (await browser.process(ToolCall("browser.open", "analysis", "{id: 3"))).text()
    assert not home.is_error


def test_the_browser_namespace_keeps_harmonys_functions_and_adds_actions():
    from openai_harmony import ToolNamespaceConfig

    tool = BrowserTool()
    config = tool.namespace_config()
    harmony = ToolNamespaceConfig.browser()
    assert config.description == harmony.description
    assert [t.name for t in config.tools[:3]] == ["search", "open", "find"]
    assert [t.parameters for t in config.tools[:3]] == [t.parameters for t in harmony.tools]
    assert {t.name for t in config.tools[3:]} == {"click", "type", "select", "check", "press", "back", "scroll", "wait"}


async def test_an_agent_researches_on_the_site_and_cites_the_line_it_read(site, tmp_path):
    require("chromium")
    from examples.research_demo import research
    from examples.research_policy import policy
    from harmony_agent import PolicyModel
    from harmony_agent.transcript import read_transcript

    transcript = tmp_path / "research.jsonl"
    answer = await research(PolicyModel(policy), site[0], transcript)
    assert answer.startswith("On Wednesday the library opens at 12:00 and closes at 20:00")
    cited = re.search(r"【(\d+)†L(\d+)】", answer)
    events = list(read_transcript(transcript))
    views = {
        e.content.split("]")[0].lstrip("["): e.content
        for e in events
        if e.type == "tool_result" and e.content.startswith("[")
    }
    cited_view = views[cited.group(1)]
    assert re.search(
        rf"^L{cited.group(2)}: Wednesday \| 12:00 \| 20:00$", cited_view, re.MULTILINE
    )  # the citation is true
    shots = [image for e in events if e.type == "tool_result" for image in e.images]
    assert shots and all(Path(s).exists() for s in shots)  # screenshots saved with the transcript
    assert Path(shots[0]).parent == transcript.with_suffix(".screenshots")


def test_the_cli_runs_the_browser_with_a_search_backend_and_an_allow_list(site, tmp_path):
    require("chromium")

    root = ROOT
    transcript = tmp_path / "cli.jsonl"
    proc = run_cli(
        [
            "run",
            "When does the library open on Wednesdays?",
            "--tools",
            "browser",
            "--model",
            "policy:examples.research_policy:policy",
            "--search",
            f"local:{SITE_FOLDER}@{site[0]}",
            "--allow",
            "127.0.0.1",
            "--yes",
            "--transcript",
            str(transcript),
        ],
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr
    assert "On Wednesday the library opens at 12:00 and closes at 20:00" in proc.stdout
    assert list(transcript.with_suffix(".screenshots").glob("*.jpg"))
    bad = run_cli(
        ["run", "x", "--tools", "browser", "--search", "bing", "--model", "policy:examples.research_policy:policy"],
        cwd=root,
        timeout=60,
    )
    assert bad.returncode == 2 and "unknown search backend 'bing'" in bad.stderr


async def test_open_reads_a_page_after_its_load_listeners_and_follows_a_page_that_moves_on_before_its_load(
    site, tmp_path
):
    base, _hits = site
    pages = {
        # Its load listeners run after the tool's own (installed first): the view must still show what they did.
        "/late": "<title>Late</title><p>at parse</p><script>addEventListener('load', () => "
        "document.body.insertAdjacentHTML('beforeend', '<p>added at load</p>'));</script>",
        # Moves on before its load: the open waits in the next document instead.
        "/moves": "<title>Moving</title><script>location.replace('/late?moved');</script><img src='/slow.png'>",
    }
    tool = make_tool(base, tmp_path, policy=NavigationPolicy(allow_addresses=["127.0.0.1"]))
    try:
        with serve_pages(pages) as pages_base:
            late = await call(tool, "open", id=f"{pages_base}/late")
            assert "at parse" in late.text() and "added at load" in late.text(), late.text()
            moved = await call(tool, "open", id=f"{pages_base}/moves")
            assert not moved.is_error and "added at load" in moved.text(), moved.text()
            assert moved.metadata["url"].endswith("/late?moved")
    finally:
        await tool.aclose()


async def test_reader_mode_leaves_a_short_page_whole_without_running_the_extractor(browser, site, monkeypatch):
    import trafilatura

    def extract(*args, **kwargs):
        raise AssertionError("the extractor ran on a page shorter than an article")

    monkeypatch.setattr(trafilatura, "extract", extract)
    short = await call(browser, "open", id=f"{site[0]}/about.html")
    assert not short.is_error and short.metadata["source"] == "dom", short.text()


async def test_a_page_cannot_forge_the_view_through_the_promises_the_tool_waits_on(site, tmp_path):
    base, _hits = site
    # The page replaces Promise, its `then`, and gives every object a `then` (a thenable hands back what it likes);
    # the tool's wait for the load and its reading of the page must use none of what the page replaced.
    forged = (
        "<title>Forger</title><p>real text</p><script>"
        "Promise.prototype.then = function () { return Promise.resolve('forged view'); };"
        "Object.defineProperty(Object.prototype, 'then', { value(ok) { ok('forged object'); }, configurable: true });"
        "window.Promise = function () { return Promise.resolve('forged promise'); };</script>"
    )
    tool = make_tool(base, tmp_path, policy=NavigationPolicy(allow_addresses=["127.0.0.1"]))
    try:
        with serve_pages({"/forger": forged}) as pages_base:
            view = await call(tool, "open", id=f"{pages_base}/forger")
            assert not view.is_error and "real text" in view.text(), view.text()
            again = await call(tool, "open")  # read again, as it is now
            assert not again.is_error and "real text" in again.text(), again.text()
    finally:
        await tool.aclose()
