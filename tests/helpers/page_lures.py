"""A battery of ways a page may try to reach a local server the browser policy forbids.

Each lure asks for its own path on the forbidden server (``/lure/NAME``), so a
server that logs request lines tells which lure got through; a bare TCP
connection (a preconnect) is logged as such. Lures are grouped into pages by
family, so the battery takes a few page loads, not one per lure. Used by
``tests/test_battery_pages.py`` and ``benchmarks/hardening.py``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from harmony_agent.tools import ToolCall
from harmony_agent.tools.browser import BrowserTool, NavigationPolicy
from helpers.logging_servers import ForbiddenServer
from helpers.pages import serve_pages

#: family -> {lure name: HTML (or, for workers, the script's text)}. `{t}` is `127.0.0.1:PORT` of the forbidden server.
SUBRESOURCES = {
    "img": '<img src="http://{t}/lure/img">',
    "img-srcset": '<img srcset="http://{t}/lure/img-srcset 2x">',
    "picture": '<picture><source srcset="http://{t}/lure/picture"><img></picture>',
    "script": '<script src="http://{t}/lure/script"></script>',
    "module-script": '<script type="module" src="http://{t}/lure/module-script"></script>',
    "stylesheet": '<link rel="stylesheet" href="http://{t}/lure/stylesheet">',
    "css-import": '<style>@import url("http://{t}/lure/css-import");</style>',
    "css-background": '<div style="background:url(http://{t}/lure/css-background);width:9px;height:9px"></div>',
    "css-image-set": "<div style=\"background-image:image-set('http://{t}/lure/css-image-set' 1x);width:9px;height:9px\"></div>",
    "font-face": '<style>@font-face{{font-family:L;src:url(http://{t}/lure/font-face)}}</style><p style="font-family:L">f</p>',
    "iframe": '<iframe src="http://{t}/lure/iframe"></iframe>',
    "iframe-srcdoc": '<iframe srcdoc="<img src=&quot;http://{t}/lure/iframe-srcdoc&quot;>"></iframe>',
    "object": '<object data="http://{t}/lure/object"></object>',
    "embed": '<embed src="http://{t}/lure/embed">',
    "video": '<video src="http://{t}/lure/video" poster="http://{t}/lure/video-poster" preload="auto"></video>',
    "audio": '<audio src="http://{t}/lure/audio" preload="auto"></audio>',
    "track": '<video><track default src="http://{t}/lure/track"></video>',
    "input-image": '<input type="image" src="http://{t}/lure/input-image">',
    "svg-image": '<svg><image href="http://{t}/lure/svg-image" width="9" height="9"/></svg>',
    "link-icon": '<link rel="icon" href="http://{t}/lure/link-icon">',
}
SCRIPTED = {
    "fetch": '<script>fetch("http://{t}/lure/fetch").catch(() => {{}});</script>',
    "fetch-no-cors": '<script>fetch("http://{t}/lure/fetch-no-cors", {{mode: "no-cors"}}).catch(() => {{}});</script>',
    "fetch-keepalive": '<script>fetch("http://{t}/lure/fetch-keepalive", {{method: "POST", keepalive: true, body: "x"}}).catch(() => {{}});</script>',
    "xhr": '<script>const x = new XMLHttpRequest(); x.open("GET", "http://{t}/lure/xhr"); x.send();</script>',
    "event-source": '<script>try {{ new EventSource("http://{t}/lure/event-source"); }} catch (e) {{}}</script>',
    "beacon": '<script>navigator.sendBeacon("http://{t}/lure/beacon", "x");</script>',
    "image-object": '<script>new Image().src = "http://{t}/lure/image-object";</script>',
    "dynamic-import": '<script>import("http://{t}/lure/dynamic-import").catch(() => {{}});</script>',
    "websocket": '<script>try {{ new WebSocket("ws://{t}/lure/websocket"); }} catch (e) {{}}</script>',
    "websocket-frame": (
        '<iframe srcdoc="<script>try {{ new parent.WebSocket(&quot;ws://{t}/lure/websocket-frame&quot;) }}'
        ' catch (e) {{}}; try {{ new WebSocket(&quot;ws://{t}/lure/websocket-frame2&quot;) }} catch (e) {{}}</script>"></iframe>'
    ),
    "css-injected": '<script>const s = document.createElement("link"); s.rel = "stylesheet"; s.href = "http://{t}/lure/css-injected"; document.head.append(s);</script>',
    "service-worker": '<script>navigator.serviceWorker && navigator.serviceWorker.register("http://{t}/lure/service-worker").catch(() => {{}});</script>',
}
SPECULATIVE = {
    "preconnect": '<link rel="preconnect" href="http://{t}/">',
    "dns-prefetch": '<link rel="dns-prefetch" href="http://{t}/">',
    "prefetch": '<link rel="prefetch" href="http://{t}/lure/prefetch">',
    "preload": '<link rel="preload" as="image" href="http://{t}/lure/preload">',
    "modulepreload": '<link rel="modulepreload" href="http://{t}/lure/modulepreload">',
    "prerender-link": '<link rel="prerender" href="http://{t}/lure/prerender-link">',
    "speculation-prefetch": '<script type="speculationrules">{{"prefetch": [{{"source": "list", "urls": ["http://{t}/lure/speculation-prefetch"]}}]}}</script>',
    "speculation-prerender": '<script type="speculationrules">{{"prerender": [{{"source": "list", "urls": ["http://{t}/lure/speculation-prerender"]}}]}}</script>',
    "speculation-document": (
        '<a href="http://{t}/lure/speculation-document">x</a><script type="speculationrules">'
        '{{"prefetch": [{{"source": "document", "where": {{"href_matches": "/*"}}, "eagerness": "immediate"}}]}}</script>'
    ),
    "anchor-ping": '<a id="ping" href="#here" ping="http://{t}/lure/anchor-ping">p</a><script>document.getElementById("ping").click();</script>',
}
WORKERS = {
    "worker-fetch": 'fetch("http://{t}/lure/worker-fetch").catch(() => {{}});',
    "worker-websocket": 'try {{ new WebSocket("ws://{t}/lure/worker-websocket"); }} catch (e) {{}}',
    "worker-import-scripts": 'try {{ importScripts("http://{t}/lure/worker-import-scripts"); }} catch (e) {{}}',
    "worker-event-source": 'try {{ new EventSource("http://{t}/lure/worker-event-source"); }} catch (e) {{}}',
    "worker-xhr": 'try {{ const x = new XMLHttpRequest(); x.open("GET", "http://{t}/lure/worker-xhr"); x.send(); }} catch (e) {{}}',
}
POPUPS = {
    "window-open": '<script>window.open("http://{t}/lure/window-open");</script>',
    "window-open-blank-later": (
        '<script>const w = window.open("about:blank"); if (w) setTimeout(() => '
        '{{ w.location = "http://{t}/lure/window-open-blank-later"; }}, 50);</script>'
    ),
    "window-open-redirect": '<script>window.open("/bounce-popup");</script>',
    "target-blank-link": '<a id="tb" target="_blank" href="http://{t}/lure/target-blank-link">x</a><script>document.getElementById("tb").click();</script>',
    "target-blank-form": (
        '<form id="tf" target="_blank" method="post" action="http://{t}/lure/target-blank-form">'
        '<input name="q" value="1"></form><script>document.getElementById("tf").submit();</script>'
    ),
    "window-open-noopener": '<script>window.open("http://{t}/lure/window-open-noopener", "_blank", "noopener");</script>',
}
#: Host spellings that lead to 127.0.0.1; each is tried as a top-level navigation and as an image.
SPELLINGS = [
    "localhost",
    "localhost.",
    "x.localhost",
    "x.localhost.",
    "127.1",
    "127.0.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "0.0.0.0",
    "0",
    "LOCALHOST",
    "127.000.000.001",
]


def _page(family: str, lures: dict[str, str], target: str) -> str:
    body = "\n".join(html.format(t=target) for html in lures.values())
    return f"<!doctype html><title>{family}</title>\n{body}\n<p>{family} lures set</p>"


def battery(target: str) -> tuple[dict[str, str], list[str], dict[str, list[str]]]:
    """(pages to serve by path, top-level URLs to try opening, lure names by page path) for a forbidden ``target``.

    ``target`` is ``127.0.0.1:PORT``. Pages are served by the allowed server; the worker scripts too.
    """
    port = target.rsplit(":", 1)[1]
    pages = {
        "/subresources": _page("subresources", SUBRESOURCES, target),
        "/scripted": _page("scripted", SCRIPTED, target),
        "/speculative": _page("speculative", SPECULATIVE, target),
        "/popups": _page("popups", POPUPS, target),
        "/bounce-popup": f"REDIRECT http://{target}/lure/window-open-redirect",
        "/bounce": f"REDIRECT http://{target}/lure/redirect",
        "/workers.js": "\n".join(js.format(t=target) for js in WORKERS.values())
        + '\nonconnect = () => { fetch("http://'
        + target
        + '/lure/shared-worker-connect").catch(() => {}); };',
        "/workers": (
            '<!doctype html><title>workers</title><script>new Worker("/workers.js"); '
            'try { new SharedWorker("/workers.js").port.start(); } catch (e) {} '
            'try { new Worker(URL.createObjectURL(new Blob([`fetch("http://'
            + target
            + '/lure/blob-worker-fetch").catch(() => {})`]))); } catch (e) {}</script><p>workers lures set</p>'
        ),
        "/spellings": "<!doctype html><title>spellings</title>"
        + "".join(f'<img src="http://{host}:{port}/lure/img-{i}">' for i, host in enumerate(SPELLINGS))
        + "<p>spellings lures set</p>",
    }
    opens = [f"http://{host}:{port}/lure/open-{i}" for i, host in enumerate(SPELLINGS)] + ["/bounce"]
    names = {
        "/subresources": list(SUBRESOURCES),
        "/scripted": list(SCRIPTED),
        "/speculative": list(SPECULATIVE),
        "/popups": list(POPUPS),
        "/workers": list(WORKERS) + ["shared-worker-connect", "blob-worker-fetch"],
        "/spellings": [f"img-{i}" for i in range(len(SPELLINGS))],
    }
    return pages, opens, names


def lure_count(names: dict[str, list[str]], opens: list[str]) -> int:
    # Each worker lure runs in a dedicated and in a shared worker.
    return sum(len(v) for v in names.values()) + len(WORKERS) + len(opens)


@dataclass
class Figures:
    """What a battery run found: attacks tried, those that reached the forbidden server, crashes, leftovers."""

    tried: int = 0
    leaks: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    left_behind: list[str] = field(default_factory=list)

    @property
    def contained(self) -> int:
        return self.tried - len(self.leaks) - len(self.crashes)


def _browser_children() -> set[int]:
    """Chromium processes under this process (the browser is started by the tool, and must end with it)."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read()
        except OSError:
            continue
        if b"chrom" in command and int(fields[1]) in {me} | found:
            found.add(int(entry))
    return found


async def run_battery(settle: float = 2.0) -> Figures:
    """Every lure against a forbidden port on 127.0.0.1, through ``BrowserTool`` with only the page server allowed."""
    forbidden = ForbiddenServer()
    figures = Figures()
    target = f"127.0.0.1:{forbidden.port}"
    pages, opens, names = battery(target)
    figures.tried = lure_count(names, opens)
    before = _browser_children()
    try:
        with serve_pages(pages) as base:
            tool = BrowserTool(policy=NavigationPolicy(allow_addresses=[f"127.0.0.1:{base.rsplit(':', 1)[1]}"]))
            downloads = None
            for path in list(names) + opens:
                url = base + path if path.startswith("/") else path
                try:
                    result = await tool.process(ToolCall("browser.open", "analysis", json.dumps({"id": url})))
                    downloads = tool.session.downloads_dir
                    if path in names and f"{path[1:]} lures set" not in result.text():
                        figures.crashes.append(f"{path}: the page did not load ({result.text()[:120]})")
                    elif path not in names and not result.is_error:
                        figures.leaks.append(f"{url}: opened ({result.text()[:80]})")
                except Exception as exc:  # a tool must answer, never raise
                    figures.crashes.append(f"{url}: {type(exc).__name__}: {exc}")
                if path in names:
                    time.sleep(settle)  # timers, workers and speculative work
            await tool.aclose()
        time.sleep(0.5)
        figures.leaks += [f"reached: {line}" for line in forbidden.connections]
        figures.leaks += [f"datagram: {data[:40]!r}" for data in forbidden.datagrams]
        if downloads is not None and downloads.exists():
            figures.left_behind.append(f"downloads folder {downloads}")
        figures.left_behind += [f"chromium process {pid}" for pid in _browser_children() - before]
    finally:
        forbidden.close()
    return figures
