"""Chromium as the browser tool launches it: which binary, with which features, and what a context costs.

A short browser session's cost is mostly Chromium's: the context, its window and its renderer process.
These tests pin the two things that made it two to three times dearer than it needs to be: the full
browser's hidden UI pages (a renderer each), and the full browser where a headless shell is installed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest

from harmony_agent.tools.browser.chromium import BrowserEngine, find_chromium

pytest.importorskip("playwright")


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    "shell_path", ["chrome-linux/headless_shell", "chrome-headless-shell-linux64/chrome-headless-shell"]
)
def test_a_headless_shell_comes_first_for_headless_and_the_full_browser_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shell_path: str
) -> None:
    """Both layouts Playwright has installed its headless shell in; a configured path still wins."""
    full = executable(tmp_path / "chromium-1200" / "chrome-linux" / "chrome")
    shell = executable(tmp_path / "chromium_headless_shell-1200" / shell_path)
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path))
    monkeypatch.delenv("HARMONY_AGENT_CHROMIUM", raising=False)
    assert find_chromium(headless=True) == str(shell)
    assert find_chromium(headless=False) == str(full)
    assert find_chromium() == str(full)  # the doctor and the tests' own launches: as before
    monkeypatch.setenv("HARMONY_AGENT_CHROMIUM", str(full))
    assert find_chromium(headless=True) == str(full)


def test_a_context_in_the_full_chromium_costs_one_renderer_and_playwrights_disabled_features_stay_off() -> None:
    """The full Chromium (headless mode) gave every context's window hidden address-bar popup pages, in a
    renderer of their own; and the tool's own --disable-features replaced Playwright's (Chromium reads the last
    one), turning HTTPS upgrades of http:// pages and the rest back on."""
    full = find_chromium(headless=False)
    if full is None:
        pytest.skip("no Chromium here")

    async def main() -> tuple[list[str], list[dict], list[str]]:
        engine = BrowserEngine(full)
        try:
            browser = await engine.browser()
            context = await browser.new_context()
            await context.new_page()
            await asyncio.sleep(0.5)  # any window UI the new window makes is made by now
            cdp = await browser.new_browser_cdp_session()
            targets = [t["type"] for t in (await cdp.send("Target.getTargets"))["targetInfos"]]
            processes = (await cdp.send("SystemInfo.getProcessInfo"))["processInfo"]
            renderers = [p for p in processes if p["type"] == "renderer"]
            flags = [a for a in psutil.Process(renderers[0]["id"]).cmdline() if a.startswith("--disable-features=")]
            return targets, renderers, flags
        finally:
            await engine.shutdown()

    targets, renderers, flags = asyncio.run(main())
    assert targets == ["page"], targets
    assert len(renderers) == 1, renderers
    [disabled] = flags
    features = set(disabled.split("=", 1)[1].split(","))
    assert {"HttpsUpgrades", "AvoidCorsURLLoaderRestartOnRedirect", "site-per-process"} <= features, features
