"""Chromium through Playwright: one browser per process (on the runtime), one context per agent session.

Every connection the session's Chromium makes goes through its policy proxy
(:mod:`tools.browser.proxy`), which asks the policy about each request and
tunnel, each redirect hop included, before connecting; the session turns
what the proxy refused into the model's error when the tab lands on it. It
waits for pages by watching in-flight requests rather than a fixed
network-idle delay, which keeps an ``open`` of a static page close to the
cost of the navigation.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmony_agent.tools.base import ToolError
from harmony_agent.tools.browser import actions
from harmony_agent.tools.browser.chromium import CHROMIUM_ARGS, BrowserEngine, find_chromium
from harmony_agent.tools.browser.policy import NavigationPolicy
from harmony_agent.tools.browser.proxy import PolicyProxy
from harmony_agent.tools.browser.scripts import (
    HOOKS_SCRIPT,
    LOADED,
    LOADED_SNAPSHOT_SCRIPT,
    NO_SOCKETS_SCRIPT,
    SETTLE_PROBE,
    SETTLED_SNAPSHOT_SCRIPT,
    SNAPSHOT_SCRIPT,
    call,
)

# Where they lived before chromium.py: imported from here by the doctor, the tests and the benchmarks.
__all__ = ["CHROMIUM_ARGS", "BrowserEngine", "BrowserSession", "Snapshot", "find_chromium"]
# After an action, how long the DOM must be unchanged before the page counts as settled (animations, widgets
# that redraw in steps).
ACTION_DOM_QUIET = 0.06
VIEWPORT = (1280, 900)


class PageScriptError(RuntimeError):
    """A script the tool ran in a page threw (the page may have changed what it relies on)."""


@dataclass
class Snapshot:
    """What the page showed: the walker's text, links and controls, plus raw HTML for article extraction."""

    url: str
    title: str
    text: str
    links: dict[int, str]
    controls: dict[int, dict[str, Any]]
    interactive: bool  # any control besides plain links: the page is for using, not only reading
    html: str | None  # the rendered, visible DOM (only asked for pages without controls, for reader mode)
    generation: int


class BrowserSession:
    """One agent session's browser context and its single live tab."""

    def __init__(
        self,
        engine: BrowserEngine,
        policy: NavigationPolicy,
        *,
        page_timeout: float = 15.0,
        downloads_dir: Path | None = None,
        allow_sockets: bool = False,
        viewport: tuple[int, int] = VIEWPORT,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.page_timeout = page_timeout
        self._own_downloads = downloads_dir is None  # a folder we made is removed on close; a given one is the user's
        self.downloads_dir = downloads_dir or Path(tempfile.mkdtemp(prefix="harmony-downloads-"))
        self.allow_sockets = allow_sockets
        self.viewport = viewport
        self.context: Any = None
        self.page: Any = None
        self.generation = 0
        self.notes: list[str] = []  # things the model must be told with the next reply
        self.refused: dict[str, str] = {}  # the page the tab landed on, refused by the policy -> why
        self._proxy_refused: dict[str, str] = {}  # what the proxy refused since the last navigation -> why
        self.blocked_subresources = 0
        self.downloads: list[str] = []
        self._inflight: set[Any] = set()
        self._saving: list[asyncio.Future] = []
        self._crashed = False
        self._engine_held = False
        self._proxy: PolicyProxy | None = None
        self._cdp: Any = None  # the page's own DevTools session: navigating and reading the page
        #: Seconds the last navigation or view spent in its parts: navigate (until the new document committed),
        #: load (the wait in the page for its load, and the view read then), settle and snapshot (when the page
        #: was not settled at its load, or after an action). The benchmark prints them.
        self.timings: dict[str, float] = {}

    # -- lifecycle ---------------------------------------------------------

    async def ensure(self) -> Any:
        """The live page, (re)creating the context or tab when missing, crashed or disconnected."""
        if not self._engine_held:
            self.engine.acquire()
            self._engine_held = True
        browser = await self.engine.browser()
        if self.context is not None and (self.context.browser is not browser or not browser.is_connected()):
            self.context = self.page = None
            self.notes.append(
                "The browser had stopped and was restarted; pages opened before are gone, but earlier cursors still show what you saw."
            )
        if self.context is None:
            await self._open_context(browser)
        if self.page is None or self._crashed or self.page.is_closed():
            if self._crashed:
                self.notes.append("The page crashed and was reopened in a fresh tab.")
                with contextlib.suppress(Exception):
                    await self.page.close()
            self._crashed = False
            self.page = await self._new_page()
        return self.page

    async def _open_context(self, browser: Any) -> None:
        if self._proxy is None:
            self._proxy = await PolicyProxy(self.policy, on_refused=self._refused_by_proxy).start()
        # `<-loopback>` sends loopback through the proxy too, which Chromium would otherwise connect to directly.
        self.context = await browser.new_context(
            viewport={"width": self.viewport[0], "height": self.viewport[1]},
            accept_downloads=True,
            service_workers="block",
            proxy={"server": self._proxy.url, "bypass": "<-loopback>"},
        )
        await self.context.add_init_script(HOOKS_SCRIPT)
        if not self.allow_sockets:
            await self.context.add_init_script(NO_SOCKETS_SCRIPT)

    @property
    def kind(self) -> tuple[Any, ...]:
        """What a spare must match to serve this session (the rest is set when it is taken: :meth:`adopt`)."""
        return self.viewport, self.allow_sockets

    async def prepare(self) -> BrowserSession:
        """Make this a spare: its context and first page, ready before any session needs them. It holds no
        claim on the engine (a session that takes it does), and allows nothing until :meth:`adopt`."""
        try:
            browser = self.engine.live_browser
            if browser is None:
                raise ToolError("Chromium is not running; a spare does not launch it")
            await self._open_context(browser)
            self.page = await self._new_page()
        except BaseException:
            await self.close()
            raise
        return self

    def adopt(self, policy: NavigationPolicy, *, page_timeout: float, downloads_dir: Path | None) -> None:
        """Serve a session from this spare: its policy (the proxy's too), page timeout and downloads folder."""
        self.policy = policy
        if self._proxy is not None:
            self._proxy.policy = policy
        self.page_timeout = page_timeout
        if self.page is not None:
            self.page.set_default_timeout(page_timeout * 1000)
        if downloads_dir is not None:
            if self._own_downloads:
                shutil.rmtree(self.downloads_dir, ignore_errors=True)
            self.downloads_dir, self._own_downloads = downloads_dir, False

    def unused(self) -> bool:
        """A spare that can still serve: its context and page alive, in the Chromium that runs now, nothing loaded."""
        browser = self.engine.live_browser
        return (
            browser is not None
            and self.context is not None
            and self.context.browser is browser
            and self.page is not None
            and not self.page.is_closed()
            and not self._crashed
            and self.page.url == "about:blank"
        )

    async def _new_page(self) -> Any:
        page = await self.context.new_page()
        page.on("popup", lambda popup: asyncio.ensure_future(self._on_popup(popup)))
        page.set_default_timeout(self.page_timeout * 1000)
        page.on("crash", lambda _page: setattr(self, "_crashed", True))
        page.on("request", lambda request: self._inflight.add(request))
        page.on("requestfinished", lambda request: self._inflight.discard(request))
        page.on("requestfailed", lambda request: self._inflight.discard(request))
        page.on("download", lambda download: self._saving.append(asyncio.ensure_future(self._save_download(download))))
        self._cdp = await self.context.new_cdp_session(page)
        return page

    async def _on_popup(self, page: Any) -> None:
        """Popups are not followed into new tabs: they are closed, and their URL is offered to the model."""
        url = page.url
        with contextlib.suppress(Exception):
            await page.close()
        reason = await self.policy.check_async(url) if url and url != "about:blank" else None
        if reason:
            self.notes.append(f"The page tried to open a popup to {url}; refused: {reason}.")
        else:
            self.notes.append(
                f"The page tried to open a popup{f' to {url}' if url != 'about:blank' else ''}; popups are closed (open the URL yourself if you need it)."
            )

    def _refused_by_proxy(self, target: str, reason: str) -> None:
        """The proxy refused a request (``target`` is its URL) or a tunnel (``host:port``, for HTTPS): a
        subresource's, unless the tab lands on it (see below)."""
        self._proxy_refused[target.split("#")[0]] = reason
        self.blocked_subresources += 1

    def _note_refused_landing(self, failed: bool = False) -> None:
        """Whether the tab landed on what the proxy refused: a plain-HTTP URL shows the proxy's refused page, and an
        HTTPS one Chromium's error page (``failed``: the navigation failed so), for the tunnel the proxy refused.
        That was a page refused, not a subresource, and the model is told why (:meth:`_raise_if_refused`)."""
        url = self.page.url.split("#")[0]
        if failed or url.startswith("chrome-error:"):  # an error page has no URL of its own: the last tunnel refused
            tunnels = [target for target in self._proxy_refused if "://" not in target]
            landed, shown = (tunnels[-1], f"https://{tunnels[-1]}") if tunnels else (None, "")
        else:
            landed, shown = (url, url) if url in self._proxy_refused else (None, "")
        if landed is not None:
            self.refused[shown] = self._proxy_refused.pop(landed)
            self.blocked_subresources -= 1

    async def _save_download(self, download: Any) -> None:
        target = self.downloads_dir / Path(download.suggested_filename).name
        try:
            await download.save_as(target)
            self.downloads.append(str(target))
            self.notes.append(f"A download was saved to {target}.")
        except Exception as exc:
            self.notes.append(f"A download ({download.suggested_filename}) failed: {exc}.")

    async def close(self) -> None:
        context, self.context, self.page = self.context, None, None
        if context is not None:
            with contextlib.suppress(Exception):
                await context.close()
        if self._engine_held:
            self._engine_held = False
            await self.engine.release()
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            await proxy.close()
        if self._own_downloads:
            shutil.rmtree(self.downloads_dir, ignore_errors=True)

    # -- navigation --------------------------------------------------------

    async def goto(self, url: str) -> None:
        """Load ``url`` in the tab and settle it (:meth:`open` also reads it)."""
        await self._navigate(url, LOADED)
        await self.settle()

    async def open(self, url: str, *, want_html: bool = True) -> Snapshot:
        """Load ``url`` and read it. Once the navigation has committed, one round trip waits in the page for its
        load and reads it, if it is settled by then; a page that is not is settled, then read."""
        data = await self._navigate(url, call(LOADED_SNAPSHOT_SCRIPT, [want_html, 0]))
        return await self._view(data, want_html, settle_for=0, read_in=0.0)

    async def _navigate(self, url: str, expression: str) -> Any:
        """Navigate the tab to ``url``, then evaluate ``expression`` (which waits for the load) in the new document;
        its value, or None when there is none to have (a download, or the page's script failed).

        Over the page's own DevTools session, not Playwright's ``goto``, so that waiting for the load and reading
        the page are one round trip: ``Page.navigate`` answers once the new document (or Chromium's error page)
        has committed, so what is evaluated next runs in it, and is answered as soon as the page has loaded.
        """
        reason = await self.policy.check_async(url, top_level=True)
        if reason:
            raise ToolError(f"navigation to {url} refused: {reason}")
        await self.ensure()
        self._forget_refusals()
        try:
            value, error = await asyncio.wait_for(self._load(url, expression), self.page_timeout)
        except asyncio.TimeoutError:
            value, error = None, f"{url} did not load within {self.page_timeout:g} s"
        await self._leave_if_refused(
            f"navigation to {url}", failed=error is not None and "ERR_TUNNEL_CONNECTION_FAILED" in error
        )
        if error is not None:
            raise ToolError(error)
        return value

    async def _load(self, url: str, expression: str) -> tuple[Any, str | None]:
        """``Page.navigate`` to ``url``, then ``expression`` evaluated in the new document: its value, and why the
        navigation failed (None if it did not)."""
        started = time.perf_counter()
        try:
            reply = await self._cdp.send("Page.navigate", {"url": url})
        except Exception as exc:  # the page crashed or closed
            return None, f"could not open {url}: {str(exc).splitlines()[0]}"
        committed = time.perf_counter()
        self.timings = {"navigate": committed - started}
        if reply.get("isDownload"):
            return None, None  # the page stays; the download is saved as the page settles
        if reply.get("errorText"):  # Chromium's error page has committed by now
            return None, f"could not open {url}: {reply['errorText']}"
        value = None
        while True:
            try:
                boxed = await self._evaluate(expression, awaited=True)  # {"value": ...}, see scripts.py
                value = boxed.get("value") if isinstance(boxed, dict) else None
                break
            except PageScriptError:
                break  # read it again after settling: a failure that stays is told then
            except Exception:  # the document went before its load (it navigated itself): wait in the next one
                if self._crashed or self.page.is_closed():
                    break
                await asyncio.sleep(0.005)
        self.timings["load"] = time.perf_counter() - committed
        return value, None

    def _forget_refusals(self) -> None:
        """Before a navigation or an action: what was refused before it is not its doing."""
        self.refused.clear()
        self._proxy_refused.clear()

    async def _leave_if_refused(self, what: str, *, failed: bool = False) -> None:
        """If the tab landed on a refused page (see :meth:`_note_refused_landing`), go back to the page the model
        last saw and say why (``what`` was refused)."""
        self._note_refused_landing(failed=failed)
        if self.refused:
            with contextlib.suppress(Exception):
                await self.page.go_back(timeout=5000)
            self._raise_if_refused(what)

    def _raise_if_refused(self, what: str) -> None:
        if self.refused:
            refused_url, why = next(iter(self.refused.items()))
            raise ToolError(f"{what} refused at {refused_url}: {why}")

    async def finish_downloads(self, timeout: float = 30.0) -> None:
        """Wait for downloads under way, so the reply can say where they were saved."""
        saving, self._saving = self._saving, []
        if saving:
            await asyncio.wait(saving, timeout=timeout)

    async def settle(self, limit: float = 3.0, dom_quiet: float = 0.0) -> None:
        """Wait until the page is settled: no request in flight, no short timer pending (debounced widgets), and
        no DOM change for ``dom_quiet`` s; at most ``limit`` s in all. A quiet page costs one round trip.

        There is no fixed quiet window. Chromium reports a request on the page's DevTools session before it
        answers a later ``evaluate`` there, so once the probe has come back, every request the page started
        before it is in ``_inflight`` already; a request a timer will start is announced by the pending timer.
        The parser's own insertions count as DOM changes, so after a load the DOM need not be quiet; after an
        action the caller asks for ``dom_quiet``, for animations and widgets that redraw in steps.
        """
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self._inflight:
                await asyncio.sleep(0.005)
                continue
            try:
                pending, idle_ms = await self._evaluate(SETTLE_PROBE)
            except Exception:  # between documents: try again
                pending, idle_ms = 1, 0.0
            if self._inflight:  # reported while the probe ran
                continue
            if pending == 0 and idle_ms >= dom_quiet * 1000:
                break
            wait = dom_quiet - idle_ms / 1000 if pending == 0 else 0.01
            await asyncio.sleep(min(max(wait, 0.005), 0.05))
        self._inflight.clear()
        if self._saving:
            await self.finish_downloads()
        await self._check_landing()

    async def _check_landing(self) -> None:
        """A page may navigate itself to a scheme the policy refuses at the top (blob:, data:); leave it."""
        url = self.page.url
        reason = await self.policy.check_async(url, top_level=True)
        if reason:
            with contextlib.suppress(Exception):
                await self.page.goto("about:blank")
            raise ToolError(f"the page navigated to {url[:100]}, which was refused: {reason}")

    async def snapshot(self, *, want_html: bool = True, settle_for: float | None = None) -> Snapshot:
        """What the page shows now. With ``settle_for`` (the DOM quiet time to wait for, in s), settle it first:
        a page that is quiet already is checked and read in one round trip; one that is not is settled, then read."""
        await self.ensure()
        started = time.perf_counter()
        data = None
        if settle_for is not None and not self._inflight:
            with contextlib.suppress(Exception):  # between documents, or crashed: settle, then read as usual
                data = await self._evaluate(call(SETTLED_SNAPSHOT_SCRIPT, [want_html, settle_for * 1000]))
        self.timings = {}
        return await self._view(data, want_html, settle_for, time.perf_counter() - started)

    async def _view(self, data: Any, want_html: bool, settle_for: float | None, read_in: float) -> Snapshot:
        """The view from ``data``, a snapshot taken in ``read_in`` s that also found the page settled; when it is
        None (not settled, or not read) or a request was reported while it was taken, settle (with ``settle_for``)
        and read the page again."""
        if data is None or self._inflight:
            started = time.perf_counter()
            if settle_for is not None:
                await self.settle(dom_quiet=settle_for)
            waited = time.perf_counter() - started
            data = await self._read(want_html)
            self.timings.update(settle=waited, snapshot=time.perf_counter() - started - waited)
        else:
            self._inflight.clear()
            if self._saving:
                await self.finish_downloads()
            await self._check_landing()
            self.timings.update(settle=0.0, snapshot=read_in)
        self.generation += 1
        links = {int(k): v["url"] for k, v in data["links"].items()}
        controls = {int(k): v for k, v in data["controls"].items()}
        return Snapshot(
            data["url"],
            data["title"] or data["url"],
            data["text"],
            links,
            controls,
            data["interactive"],
            data["html"],
            self.generation,
        )

    async def _read(self, want_html: bool) -> dict[str, Any]:
        try:
            return await self._evaluate(call(SNAPSHOT_SCRIPT, want_html))
        except Exception as exc:
            if self._crashed:
                await self.ensure()
                raise ToolError("the page crashed while it was being read; it was reopened empty") from None
            raise ToolError(f"could not read the page: {str(exc).splitlines()[0]}") from None

    async def _evaluate(self, expression: str, *, awaited: bool = False) -> Any:
        """The value of ``expression`` in the page's main world, read over the page's own DevTools session.

        Not Playwright's ``evaluate``: that first installs Playwright's utility script in every new document
        (one more round trip to the page, and compiling it), which cost 5-8 ms of each ``open`` in the benchmark.
        ``awaited``: the expression is a promise, and its value is what it resolves to. DevTools resolves it as
        ``Promise.resolve`` does, so any object with a ``then`` (one a page put on ``Object.prototype``) would
        answer instead: only the waits in scripts.py are awaited, and they resolve with an object without a
        prototype. Everything else is read as it is.
        """
        reply = await self._cdp.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": awaited}
        )
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            raise PageScriptError((details.get("exception") or {}).get("description") or details.get("text"))
        return reply["result"].get("value")

    async def screenshot(self, path: Path) -> str | None:
        try:
            await self.page.screenshot(path=str(path), type="jpeg", quality=70, timeout=5000)
            return str(path)
        except Exception:
            return None

    # -- actions -----------------------------------------------------------

    def element(self, element_id: int) -> Any:
        return self.page.locator(f'[data-harmony-id="{int(element_id)}"]').first

    async def reachable(self, element_id: int) -> Any:
        """The element, if a click would reach some visible part of it; otherwise a ToolError that says why."""
        return (await actions.reachable(self.page, element_id))[0]

    async def act(self, action: str, element_id: int | None = None, *, settle: bool = True, **options: Any) -> None:
        """Do one action on the live page, then (unless ``settle`` is false: the caller's snapshot settles)
        wait for whatever it set off."""
        page = await self.ensure()
        self._forget_refusals()
        timeout = min(self.page_timeout, 5) * 1000
        try:
            if action == "click":
                target, point = await actions.reachable(page, _element(action, element_id))
                await target.click(position=point, timeout=timeout)
            elif action == "type":
                await actions.type_text(
                    page, _element(action, element_id), options["text"], bool(options.get("submit")), timeout
                )
            elif action == "select":
                await actions.select_options(
                    page, _element(action, element_id), options["options"], bool(options.get("add")), timeout
                )
            elif action == "check":
                target, point = await actions.reachable(page, _element(action, element_id))
                await target.set_checked(bool(options.get("checked", True)), position=point, timeout=timeout)
            elif action == "press":
                await actions.press_keys(page, options["key"], element_id)
            elif action == "back":
                if await page.go_back(timeout=self.page_timeout * 1000) is None and page.url == "about:blank":
                    raise ToolError("there is no earlier page to go back to")
            elif action == "scroll":
                await page.mouse.wheel(0, options.get("pixels", 2000))
            elif action == "wait":
                await asyncio.sleep(options.get("seconds", 1.0))
            else:
                raise ToolError(f"unknown action {action}")
        except ToolError:
            raise
        except Exception as exc:
            self._raise_if_refused(f"{action}: navigation")
            raise ToolError(f"{action} failed: {str(exc).splitlines()[0]}") from None
        with contextlib.suppress(Exception):
            await page.wait_for_load_state("load", timeout=self.page_timeout * 1000)
        await self._leave_if_refused(f"{action}: navigation")
        if settle:
            await self.settle(dom_quiet=ACTION_DOM_QUIET)


def _element(action: str, element_id: int | None) -> int:
    """The element an action works on: the tool checks that it names one, this says so if a caller did not."""
    if element_id is None:
        raise ToolError(f"{action} needs an element id")
    return element_id


async def open_session(
    engine: BrowserEngine,
    policy: NavigationPolicy,
    *,
    page_timeout: float = 15.0,
    downloads_dir: Path | None = None,
    allow_sockets: bool = False,
) -> BrowserSession:
    """A browser session for one agent session: the engine's spare when it has one (its context and page ready),
    else a new one that makes its context at first use. Either way the engine starts making the next spare
    (if Chromium is running and the engine keeps spares), so the session after this one finds its own ready."""
    kind = (VIEWPORT, allow_sockets)
    spare = await engine.take_spare(kind)
    if spare is not None and not spare.unused():
        await spare.close()
        spare = None
    warm_spare(engine, kind)
    if spare is None:
        return BrowserSession(
            engine, policy, page_timeout=page_timeout, downloads_dir=downloads_dir, allow_sockets=allow_sockets
        )
    spare.adopt(policy, page_timeout=page_timeout, downloads_dir=downloads_dir)
    return spare


def warm_spare(engine: BrowserEngine, kind: tuple[Any, ...]) -> None:
    """Have ``engine`` make a spare session of ``kind`` in the background (see :meth:`BrowserEngine.warm`)."""
    viewport, allow_sockets = kind

    async def make() -> BrowserSession:
        # Allows nothing at all (no scheme) until a session adopts it with its own policy.
        nothing = NavigationPolicy(allow_schemes=())
        return await BrowserSession(engine, nothing, allow_sockets=allow_sockets, viewport=viewport).prepare()

    engine.warm(kind, make)
