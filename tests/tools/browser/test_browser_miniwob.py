"""MiniWoB++ pages (from the ``miniwob`` package, served on 127.0.0.1) solved through the browser tool's text view.

A fast slice of ``benchmarks/miniwob.py``: the policy reads only the tool's
text output, acts through ``Agent`` + ``PolicyModel`` + ``BrowserTool`` on
real Chromium, and MiniWoB's own reward decides success.
"""

from __future__ import annotations

import pytest

from helpers.available import require

pytest.importorskip("miniwob", reason="the miniwob package (dev extra) ships the task pages")


@pytest.fixture(scope="module")
def miniwob_site():
    from examples.miniwob import serve_miniwob

    with serve_miniwob() as base:
        yield base


# Each needs something the text view once lacked: a START cover set by an onclick property, a jQuery UI dialog's
# icon button, an accordion header, a debounced autocomplete list, a d3 link on a span, and an inbox whose rows,
# icons and reply form carry handlers attached from JavaScript.
@pytest.mark.parametrize(
    "task, seed",
    [
        ("click-dialog", 1),
        ("click-collapsible", 2),
        ("use-autocomplete", 4),
        ("click-link", 1),
        ("email-inbox", 3),
        ("search-engine", 3),
        # the controls: a multi-select list, date and time fields written as the page writes them, a terminal
        # that reads keys, a spinner's icon-only arrows, and two buttons that may overlap
        ("click-scroll-list", 2),
        ("enter-date", 1),
        ("enter-time", 2),
        ("terminal", 1),
        ("use-spinner", 2),
        ("click-button-sequence", 6),  # TWO covers the centre of ONE
    ],
)
async def test_the_text_policy_solves_miniwob_episodes_through_the_tool(miniwob_site, task, seed):
    require("chromium")
    from examples.miniwob import run_text_episode

    result = await run_text_episode(miniwob_site, task, seed)
    assert result["done"] and result["reward"] == 1, result
    assert result["stop"] == "final" and result["steps"] <= 8


def test_the_server_seeds_episodes_and_serves_only_the_package_pages(miniwob_site):
    import urllib.error
    import urllib.request

    from examples.miniwob import episode_url

    page = urllib.request.urlopen(episode_url(miniwob_site, "click-button", 7), timeout=10).read().decode()
    assert 'Math.seedrandom("7")' in page and page.rstrip().endswith("</html>")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{miniwob_site}/miniwob/no-such-task.html?seed=1", timeout=10)
