"""The browser tool on interactive pages, on real Chromium: each page reproduces a way the text view once failed.

Pages are served by the test on 127.0.0.1. They attach handlers from
JavaScript, cover buttons, share ``href="#"``, hide tab panels, debounce an
autocomplete, update themselves, and carry CJK text.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from harmony_agent.tools.browser import BrowserTool, NavigationPolicy
from helpers.available import require
from helpers.pages import call, marker, serve_pages

LOREM = " ".join(["The harbor light was built in 1871 and still guides the ferries home every night."] * 12)

PAGES = {
    "/handlers": """<!doctype html><title>Handlers</title><body>
<p id="log">nothing yet</p>
<div id="listener" style="padding:4px">Save draft</div>
<span id="property">Archive</span>
<span class="trash" id="icon" style="display:inline-block;width:16px;height:16px;background:#c00"></span>
<button aria-label="Close panel" id="aria"><svg width="10" height="10"></svg></button>
<div style="cursor:pointer" id="pointer"><span>Open the map</span></div>
<script>
const log = (what) => { document.getElementById('log').textContent = 'clicked ' + what; };
document.getElementById('listener').addEventListener('click', () => log('listener'));
document.getElementById('property').onclick = () => log('property');
document.getElementById('icon').addEventListener('mousedown', () => log('icon'));
document.getElementById('aria').addEventListener('click', () => log('aria'));
document.getElementById('pointer').addEventListener('click', () => log('pointer'));
</script></body>""",
    "/same-links": """<!doctype html><title>Same links</title><body><p id="log">none</p><ul>
"""
    + "".join(
        f"<li><a href=\"#\" onclick=\"document.getElementById('log').textContent='picked {n}';return false;\">Item {n}</a></li>"
        for n in range(1, 8)
    )
    + """</ul><p><a href="/handlers">Handlers</a> and <a href="/handlers">handlers again</a></p></body>""",
    "/cover": """<!doctype html><title>Cover</title><body>
<p id="log">waiting</p><button id="go" onclick="document.getElementById('log').textContent='pressed'">Press me</button>
<div id="cover" style="position:fixed;inset:0;background:rgba(0,0,0,.5)">START</div>
<script>document.getElementById('cover').onclick = function () { this.style.display = 'none'; };</script></body>""",
    "/tabs": """<!doctype html><title>Tabs</title><body><h1>Station guide</h1>
<div role="tablist"><button role="tab" aria-selected="true" id="t1">Overview</button>
<button role="tab" aria-selected="false" id="t2">Timetable</button></div>
<div role="tabpanel" id="p1"><p>"""
    + LOREM
    + """</p></div>
<div role="tabpanel" id="p2" hidden><p>Secret timetable: the last ferry leaves at 23:40.</p></div>
<script>
for (const tab of document.querySelectorAll('[role=tab]')) tab.addEventListener('click', () => {
  document.querySelectorAll('[role=tab]').forEach((t) => t.setAttribute('aria-selected', String(t === tab)));
  document.getElementById('p1').hidden = tab.id !== 't1';
  document.getElementById('p2').hidden = tab.id !== 't2';
});
</script></body>""",
    "/article": """<!doctype html><title>Article</title><body><article><h1>The harbor light</h1><p>"""
    + LOREM
    + """</p>
<p>"""
    + LOREM
    + """</p><div style="display:none"><p>Hidden draft paragraph that nobody can see.</p></div></article></body>""",
    "/autocomplete": """<!doctype html><title>Autocomplete</title><body>
<label for="q">Country</label> <input id="q" autocomplete="off"><ul id="menu" role="listbox"></ul><p id="log"></p>
<script>
const names = ['Nicaragua', 'Niger', 'Nigeria', 'Norway'];
let timer = null;
document.getElementById('q').addEventListener('input', (event) => {
  clearTimeout(timer);
  timer = setTimeout(() => {
    const menu = document.getElementById('menu');
    menu.innerHTML = '';
    for (const name of names.filter((n) => n.startsWith(event.target.value))) {
      const item = document.createElement('li');
      item.setAttribute('role', 'option');
      item.textContent = name;
      item.addEventListener('click', () => { document.getElementById('q').value = name; menu.innerHTML = '';
        document.getElementById('log').textContent = 'chose ' + name; });
      menu.appendChild(item);
    }
  }, 300);
});
</script></body>""",
    "/ticker": """<!doctype html><title>Ticker</title><body><p id="status">loading</p>
<script>setTimeout(() => { document.getElementById('status').textContent = 'ready: 42 ferries'; }, 1500);</script></body>""",
    "/cjk": "<!doctype html><title>CJK</title><body>"
    + "".join(
        f"<p>第{n}段：港口的灯塔建于一八七一年，至今每晚仍为渡轮指引回家的路。東京の港でも同じ灯りが見える。</p>"
        for n in range(120)
    )
    + "</body>",
    "/special": "<!doctype html><title>Tokens</title><body><p>A page may write <|end|> or <|start|>assistant"
    + "<|message|> as plain text.</p></body>",
}


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serve_pages(PAGES) as base:
        yield base


@pytest.fixture
async def browser():
    require("chromium")
    tool = BrowserTool(policy=NavigationPolicy(allow_domains=["127.0.0.1"], allow_addresses=["127.0.0.1"]))
    yield tool
    await tool.aclose()


@pytest.mark.parametrize(
    "label, effect",
    [
        ("Save draft", "clicked listener"),  # addEventListener on a div
        ("Archive", "clicked property"),  # onclick property, not attribute
        ("[trash]", "clicked icon"),  # icon-only, named by its class
        ("button: Close panel", "clicked aria"),  # icon button named by aria-label
        ("Open the map", "clicked pointer"),  # cursor: pointer
    ],
)
async def test_elements_with_script_handlers_get_markers_named_for_people(browser, site, label, effect):
    view = (await call(browser, "open", id=f"{site}/handlers")).text()
    clicked = await call(browser, "click", id=marker(view, label))
    assert effect in clicked.text(), clicked.text()


async def test_each_same_url_link_has_its_own_id_and_a_click_acts_on_that_element(browser, site):
    view = (await call(browser, "open", id=f"{site}/same-links")).text()
    ids = [marker(view, f"Item {n}") for n in range(1, 8)]
    assert len(set(ids)) == 7
    assert "picked 5" in (await call(browser, "click", id=ids[4])).text()
    assert "picked 2" in (await call(browser, "open", id=ids[1])).text()  # open on an in-page link clicks it too
    both = re.findall(r"【(\d+)†[Hh]andlers", view)
    assert len(set(both)) == 2  # two links to one URL: two ids, both navigate
    followed = await call(browser, "open", id=int(both[1]))
    assert followed.metadata["url"].endswith("/handlers")


async def test_a_cover_is_named_first_and_a_covered_click_fails_fast_naming_it(browser, site):
    view = (await call(browser, "open", id=f"{site}/cover")).text()
    cover = marker(view, "START")
    assert view.splitlines()[3].startswith(f"L0: On top of 1 element(s) below: 【{cover}†START】")
    started = time.monotonic()
    blocked = await call(browser, "click", id=marker(view, "button: Press me"))
    assert blocked.is_error and time.monotonic() - started < 3
    assert f"covered by 【{cover}†START】" in blocked.text() and "div#cover" in blocked.text()
    opened = await call(browser, "click", id=cover)
    assert "On top of" not in opened.text()
    assert "pressed" in (await call(browser, "click", id=marker(opened.text(), "button: Press me"))).text()


async def test_pages_with_widgets_keep_the_live_view_and_hidden_panels_stay_hidden(browser, site):
    tabs = await call(browser, "open", id=f"{site}/tabs")
    assert tabs.metadata["source"] == "dom" and "Secret timetable" not in tabs.text()
    assert "tab: Overview (selected)" in tabs.text()
    shown = await call(browser, "click", id=marker(tabs.text(), "tab: Timetable"))
    assert "Secret timetable: the last ferry leaves at 23:40." in shown.text()
    assert re.search(r"tab: Timetable \(selected(, focused)?\)", shown.text())  # the clicked tab has the focus
    article = await call(browser, "open", id=f"{site}/article")
    assert article.metadata["source"] == "article"  # reading page: reader mode, from the rendered DOM
    assert "harbor light was built" in article.text() and "Hidden draft paragraph" not in article.text()


async def test_a_debounced_autocomplete_appears_in_the_view_and_its_items_are_clickable(browser, site):
    view = (await call(browser, "open", id=f"{site}/autocomplete")).text()
    typed = await call(browser, "type", id=marker(view, 'input "Country"'), text="Nig")
    assert "option: Niger" in typed.text() and "option: Nigeria" in typed.text()  # appeared 300 ms after typing
    chosen = await call(browser, "click", id=marker(typed.text(), "option: Nigeria"))
    assert "chose Nigeria" in chosen.text() and '"Country" = "Nigeria"' in chosen.text()


async def test_a_self_updating_page_is_read_again_without_reloading(browser, site):
    first = await call(browser, "open", id=f"{site}/ticker")
    assert "loading" in first.text()
    time.sleep(1.6)
    again = await call(browser, "open")  # no id, on the live cursor: the page as it is now
    assert "ready: 42 ferries" in again.text()
    assert browser.session.page.url.endswith("/ticker")
    second = await call(browser, "open", id=f"{site}/ticker")
    waited = await call(browser, "wait", seconds=2)
    assert "loading" in second.text() and "ready: 42 ferries" in waited.text()
    old = await call(browser, "open", cursor=0)  # an older cursor still shows what was seen then
    assert "loading" in old.text()


async def test_the_view_budget_is_counted_in_real_tokens_even_for_cjk(browser, site):
    from harmony_agent.harmony.encoding import get_encoding

    encoding = get_encoding()
    view = (await call(browser, "open", id=f"{site}/cjk")).text()
    body = view.split("\n\n", 1)[1]
    real = len(encoding.encode(body, allowed_special=set()))
    assert 0.8 * browser.view_tokens <= real <= browser.view_tokens, real  # full, and within budget
    assert len(body) / 4 < 0.6 * real  # what a characters/4 estimate would have let through: over twice as much
    assert browser.count_tokens(body) == real  # the same count as harmony's own encoding


async def test_a_page_that_writes_special_token_text_is_shown_and_counted_as_text(browser, site):
    """The counter once used the tokenizer's ``encode``, which refuses special-token text: such a page failed."""
    from harmony_agent.harmony.encoding import get_encoding

    view = await call(browser, "open", id=f"{site}/special")
    assert not view.is_error, view.text()
    assert "<|start|>assistant<|message|> as plain text" in view.text()
    line = "L0: A page may write <|end|> or <|start|>assistant<|message|>"
    assert browser.count_tokens(line) == len(get_encoding().encode(line, disallowed_special=()))


async def test_without_actions_the_namespace_is_harmonys_trained_browser_byte_for_byte(site):
    require("chromium")
    from openai_harmony import ToolNamespaceConfig

    tool = BrowserTool(
        actions=False, policy=NavigationPolicy(allow_domains=["127.0.0.1"], allow_addresses=["127.0.0.1"])
    )
    try:
        assert tool.namespace_config() == ToolNamespaceConfig.browser()
        view = (await call(tool, "open", id=f"{site}/same-links")).text()
        assert "picked 3" in (await call(tool, "open", id=marker(view, "Item 3"))).text()  # open still follows ids
        refused = await call(tool, "click", id=0)
        assert refused.is_error and "no function 'click'" in refused.text()
    finally:
        await tool.aclose()


async def test_citations_become_links_for_people(browser, site):
    await call(browser, "open", id=f"{site}/article")
    await call(browser, "find", pattern="1871")
    answer = "Built in 1871 【0†L3-L4】, see also 【1†L0】; 【9†L1】 was never shown."
    shown = browser.cite_for_people(answer)
    assert f"[Article, lines 3-4]({site}/article)" in shown
    assert "[Find results for text: `1871` in `Article`, line 0](" in shown
    assert "【9†L1】" in shown
