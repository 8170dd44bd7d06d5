"""A bounded battery: about 90 ways for a page to reach a local server the policy forbids, all contained.

Subresources of every kind, scripted requests, speculative loading, workers,
popups, redirects and 16 spellings of loopback, each with its own path on a
forbidden server on 127.0.0.1 that logs every request, bare connection and
datagram (see ``tests/page_lures.py``). Nothing may reach it, no call may
raise, and the session leaves no browser process or folder behind.
"""

from __future__ import annotations

from helpers.available import require
from helpers.page_lures import run_battery


async def test_no_lure_reaches_the_forbidden_server_and_nothing_is_left_behind():
    require("chromium")
    figures = await run_battery()
    assert figures.tried >= 80
    assert figures.crashes == []
    assert figures.leaks == []
    assert figures.left_behind == []
