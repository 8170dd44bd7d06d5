"""The process's one Chromium (through Playwright), and the browser contexts it keeps ready for sessions.

:class:`BrowserEngine` launches Chromium (again after a crash), counts the
sessions using it, closes it a while after the last, and keeps a spare
context: a fresh context with its first page, made in the background while
sessions run, so the next session's browser is ready when it starts
(what a spare is, and how a session takes it, is ``engine.py``'s part).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Coroutine, Hashable
from pathlib import Path
from typing import Any, ClassVar

from harmony_agent.tools.base import ToolError

log = logging.getLogger("harmony_agent.browser")

# Chromium reads only the last --disable-features switch, and Playwright passes its own before ours: so ours
# repeats the features Playwright turns off (HTTPS upgrades of http:// pages, redirects restarted under
# request interception, optimization hints, media router...), which a switch of our own would turn back on.
PLAYWRIGHT_DISABLED_FEATURES = [
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable",
    "LensOverlay",
    "MediaRouter",
    "PaintHolding",
    "ThirdPartyStoragePartitioning",
    "AvoidCorsURLLoaderRestartOnRedirect",
    "OptimizationHints",
    "NetworkTimeServiceQuerying",
    "AimEnabled",
    "PreconnectToSearch",
]
DISABLED_FEATURES = [
    *PLAYWRIGHT_DISABLED_FEATURES,
    # Cross-site frames stay in the page's process: one renderer per page, which the page's DevTools session sees.
    "IsolateOrigins",
    "site-per-process",
    # Headless Chromium is the full browser: each context's window had a hidden address-bar popup page in a
    # renderer of its own, which cost more CPU than a short session's own page (benchmarks/batch.py).
    "WebUIOmniboxPopup",
    "WebUIOmniboxAimPopup",
    "WebUIOmniboxFullPopup",
]
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
    "--no-default-browser-check",
    "--disable-site-isolation-trials",
    "--disable-features=" + ",".join(DISABLED_FEATURES),
    # No UDP for WebRTC (STUN datagrams would go around the policy proxy), and no DNS prefetching.
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--dns-prefetch-disable",
    # Chromium answers these names with loopback itself, and connects speculatively (a bare TCP connection) to a
    # refused frame's host before its request is refused: these spellings of localhost never resolve at all.
    "--host-resolver-rules=MAP *.localhost ~NOTFOUND, MAP localhost. ~NOTFOUND, MAP *.localhost. ~NOTFOUND",
]
DEBIAN_CHROMIUM = "/usr/lib/chromium/chromium"  # the /usr/bin wrapper prints a shell warning; the binary does not
DEBIAN_HEADLESS_SHELL = "/usr/lib/chromium/chromium-headless-shell"  # Debian's package chromium-headless-shell


def find_chromium(configured: str | None = None, *, headless: bool = False) -> str | None:
    """The Chromium to launch: a configured path (argument or HARMONY_AGENT_CHROMIUM), Playwright's own, then Debian's.

    With ``headless``, a headless shell (Chromium's old headless mode, a binary of its own) comes first where
    one is installed: it opens a context without a browser window's UI, about a quarter of the browser
    process's CPU per session of the full Chromium (benchmarks/batch.py). Playwright uses it for headless too.
    """
    configured = configured or os.environ.get("HARMONY_AGENT_CHROMIUM")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    if headless:
        shell = (
            _playwright_browser("chromium_headless_shell-*/*/*headless*shell")
            or _executable(DEBIAN_HEADLESS_SHELL)
            or shutil.which("chromium-headless-shell")
            or shutil.which("chrome-headless-shell")
        )
        if shell:
            return shell
    return (
        _playwright_browser("chromium-*/chrome-linux*/chrome")
        or _executable(DEBIAN_CHROMIUM)
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )


def _executable(path: str) -> str | None:
    return path if os.access(path, os.X_OK) else None


def _playwright_browser(pattern: str) -> str | None:
    root = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or Path.home() / ".cache" / "ms-playwright")
    for candidate in sorted(root.glob(pattern), reverse=True):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


class BrowserEngine:
    """A Chromium (through Playwright) that sessions share, each in a browser context of its own.

    :meth:`shared` gives one engine per process on harmony-agent's runtime, where every session runs:
    one Chromium launch serves them all, and each session still has its own cookies, storage, downloads
    and policy proxy (see :class:`BrowserSession`). A crashed or closed Chromium is launched again at the
    next use by whichever session comes first, once, under the engine's lock; every session then finds
    its context gone and tells its model (``BrowserSession.ensure``). After the last session releases
    it, Chromium stays up for ``linger`` seconds, so a batch of short sessions one after another does
    not pay a launch each; it is closed then, or at interpreter exit.

    While Chromium runs, the shared engine keeps one **spare** per kind of context: a fresh context with its
    first page, made in the background (see :meth:`warm`), so the next session finds its browser ready
    instead of waiting for a context and a renderer process (most of a short session's browser time). A
    spare is handed to one session only, and only if it was never used: it has loaded nothing, and its
    proxy refused everything until the session gave it its policy. A spare never launches Chromium.
    """

    _instances: ClassVar[dict[tuple[Any, ...], BrowserEngine]] = {}
    #: Seconds a shared engine keeps Chromium after its last session (a launch costs 0.5 to 8 s under load).
    SHARED_LINGER = 30.0
    #: Whether the runtime's shared engine keeps a spare context ready (benchmarks/batch.py compares both).
    KEEP_SPARES: ClassVar[bool] = True

    def __init__(self, executable: str | None = None, *, headless: bool = True, linger: float = 0.0) -> None:
        self.executable = executable
        self.headless = headless
        self.linger = linger
        #: How many times Chromium was launched (the first launch and every relaunch after a crash).
        self.launches = 0
        self._playwright: Any = None
        self._browser: Any = None
        self._lock: asyncio.Lock | None = None
        self._users = 0
        self._idle: asyncio.TimerHandle | None = None
        #: Whether this engine keeps spares (the runtime's shared engine does: one that lingers).
        self.keep_spares = linger > 0 and self.KEEP_SPARES
        self._spares: dict[Hashable, asyncio.Task[Any]] = {}

    @classmethod
    def shared(cls, executable: str | None = None, *, headless: bool = True) -> BrowserEngine:
        """The process's engine on the runtime (one Chromium for every session); elsewhere, one per event loop
        (Playwright objects belong to the loop that made them), for code that drives a browser by hand."""
        from harmony_agent.sandboxes.runtime import on_runtime, runtime

        loop = asyncio.get_running_loop()
        home = "runtime" if on_runtime() else id(loop)
        key = (home, executable, headless)
        engine = cls._instances.get(key)
        if engine is None:
            linger = cls.SHARED_LINGER if home == "runtime" else 0.0
            engine = cls._instances[key] = cls(executable, headless=headless, linger=linger)
            if home == "runtime":
                runtime().on_exit(lambda: runtime().run(engine.shutdown()))
        return engine

    async def browser(self) -> Any:
        """The live browser, launched now if there is none or it stopped (crashed, or closed)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            try:
                from playwright.async_api import async_playwright
            except ImportError:
                raise ToolError("Playwright is not installed: pip install 'harmony-agent[browser]'") from None
            executable = find_chromium(self.executable, headless=self.headless)
            if executable is None:
                raise ToolError(
                    "no Chromium found: apt-get install chromium, run `playwright install chromium`, "
                    "or set HARMONY_AGENT_CHROMIUM"
                )
            if self._playwright is None:
                self._playwright = await async_playwright().start()
            try:
                self._browser = await self._playwright.chromium.launch(
                    executable_path=executable, headless=self.headless, args=CHROMIUM_ARGS
                )
            except Exception as exc:
                raise ToolError(f"Chromium ({executable}) did not start: {exc}") from None
            self.launches += 1
            return self._browser

    @property
    def live_browser(self) -> Any:
        """The browser if Chromium is running now, else None (nothing is launched)."""
        return self._browser if self._browser is not None and self._browser.is_connected() else None

    # -- spares ------------------------------------------------------------

    def warm(self, kind: Hashable, make: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Start making a spare of ``kind`` (``make()`` returns it, ready; it has an async ``close``) in the
        background, unless one is ready or on its way, this engine keeps none, or Chromium is not running."""
        if not self.keep_spares or self.live_browser is None:
            return
        task = self._spares.get(kind)
        if task is not None and not (task.done() and (task.cancelled() or task.exception() is not None)):
            return
        self._spares[kind] = asyncio.ensure_future(make())

    async def take_spare(self, kind: Hashable) -> Any | None:
        """The spare of ``kind``, waited for if it is still being made; None if there is none or it failed.

        It is taken out of the engine at once, so no two sessions can get the same one.
        """
        task = self._spares.pop(kind, None)
        if task is None:
            return None
        try:
            await asyncio.wait([task])  # unlike awaiting the task, a spare cancelled by shutdown is not our cancel
        except asyncio.CancelledError:
            _discard(task)
            raise
        if task.cancelled() or task.exception() is not None:
            return None
        return task.result()

    async def _close_spares(self) -> None:
        tasks, self._spares = list(self._spares.values()), {}
        for task in tasks:
            task.cancel()  # one still being made closes what it had made; a made one is closed here
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is None:
                with contextlib.suppress(Exception):
                    await task.result().close()

    def acquire(self) -> None:
        self._users += 1
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    async def release(self) -> None:
        """A session is done with the engine; the last one closes Chromium, now or after ``linger`` seconds."""
        self._users -= 1
        if self._users > 0:
            return
        if self.linger > 0:
            loop = asyncio.get_running_loop()
            self._idle = loop.call_later(self.linger, lambda: asyncio.ensure_future(self._close_if_idle()))
            return
        await self.shutdown()

    async def _close_if_idle(self) -> None:
        self._idle = None
        if self._users <= 0:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Close Chromium and Playwright now (a later use launches them again)."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        await self._close_spares()  # first: a spare being made waits for the lock that closing Chromium holds
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            browser, self._browser = self._browser, None
            playwright, self._playwright = self._playwright, None
            with contextlib.suppress(Exception):
                if browser is not None:
                    await browser.close()
            with contextlib.suppress(Exception):
                if playwright is not None:
                    await playwright.stop()
        if self.linger <= 0:  # a per-loop engine goes with its last user (its loop may not outlive it)
            for key, engine in list(self._instances.items()):
                if engine is self:
                    self._instances.pop(key, None)


def _discard(task: asyncio.Task[Any]) -> None:
    """Close the spare ``task`` makes: now if it is made, when it is if it is still being made (cancelled,
    making one closes what it had made)."""

    def close(done: asyncio.Task[Any]) -> None:
        if not done.cancelled() and done.exception() is None:
            closing = asyncio.ensure_future(done.result().close())
            _closing.add(closing)
            closing.add_done_callback(_closing.discard)

    task.cancel()
    task.add_done_callback(close)


#: Spares being closed in the background (held, so the loop does not drop the task before it is done).
_closing: set[asyncio.Task[Any]] = set()
