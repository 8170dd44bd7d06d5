"""A small local website for browser demos, tests and benchmarks, served on 127.0.0.1 only.

Static pages live in ``site/`` beside this module; a few routes are dynamic: a catalog
search form that changes the page, a JSON API that a page renders with
JavaScript, a redirect, a slow page, a popup and a download.

    python -m harmony_agent.runs.demo_kit.local_site   # serves until Ctrl-C, and prints its address
"""

from __future__ import annotations

import base64
import contextlib
import html
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

SITE = Path(__file__).parent / "site"
EVENTS = [
    {"date": "2026-12-03", "name": "Sea charts evening"},
    {"date": "2026-12-10", "name": "Knitting circle"},
    {"date": "2026-12-17", "name": "Winter storytelling"},
]
CATALOG = [
    ("The Lighthouse Keeper", "book", True),
    ("Charts of the Northern Coast", "map", True),
    ("Lighthouse Engineering", "book", False),
    ("Tides and Harbors", "book", True),
    ("Lighthouse Songs", "audio", True),
]
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)

SEARCH_FORM = """<!doctype html><html><head><title>Catalog search</title></head><body>
<h1>Catalog search</h1>
<form action="/search-catalog" method="get">
  <label for="title">Title contains</label> <input id="title" name="title" placeholder="e.g. lighthouse" value="{title}">
  <label for="format">Format</label>
  <select id="format" name="format">{options}</select>
  <label><input type="checkbox" name="available" {checked}> Available now only</label>
  <button type="submit">Search the catalog</button>
</form>
{results}
</body></html>"""


def catalog_page(query: dict[str, list[str]]) -> str:
    title = query.get("title", [""])[0]
    kind = query.get("format", ["any"])[0]
    available = "available" in query
    options = "".join(
        f'<option value="{v}"{" selected" if v == kind else ""}>{v.title()}</option>'
        for v in ("any", "book", "map", "audio")
    )
    results = ""
    if "title" in query:
        hits = [
            (name, form, ok)
            for name, form, ok in CATALOG
            if title.lower() in name.lower() and kind in ("any", form) and (ok or not available)
        ]
        rows = "".join(
            f"<tr><td>{html.escape(n)}</td><td>{f}</td><td>{'yes' if ok else 'no'}</td></tr>" for n, f, ok in hits
        )
        results = (
            f"<h2>{len(hits)} result(s) for “{html.escape(title)}”</h2>"
            f"<table><tr><th>Title</th><th>Format</th><th>Available</th></tr>{rows}</table>"
        )
    return SEARCH_FORM.format(
        title=html.escape(title), options=options, checked="checked" if available else "", results=results
    )


class SiteServer(http.server.ThreadingHTTPServer):
    """The demo site's server: it keeps the paths requested, for the checks that ask what was fetched."""

    hits: list[str]


class SiteHandler(http.server.BaseHTTPRequestHandler):
    slow_seconds = 30.0

    def _send(
        self,
        body: bytes | str,
        content_type: str = "text/html; charset=utf-8",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if isinstance(self.server, SiteServer):
            self.server.hits.append(self.path)
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        route = parts.path
        if route == "/api/events":
            time.sleep(0.05)  # like a real API: the page is blank until this answers
            return self._send(json.dumps(EVENTS), "application/json")
        if route == "/search-catalog":
            return self._send(catalog_page(query))
        if route == "/redirect":
            return self._send(b"", status=302, headers={"Location": query.get("to", ["/"])[0]})
        if route == "/slow":
            time.sleep(self.slow_seconds)
            return self._send("<title>Slow</title>finally")
        if route == "/popup":
            return self._send(
                "<title>Popup</title><button onclick=\"window.open('/about.html')\">Open about in a popup</button>"
            )
        if route == "/download":
            return self._send(
                b"id,title\n1,The Lighthouse Keeper\n",
                "text/csv",
                headers={"Content-Disposition": 'attachment; filename="catalog.csv"'},
            )
        if route == "/quirks":  # text that looks like the view's own markup, and a frame and image from elsewhere
            target = query.get("frame", ["about:blank"])[0]
            return self._send(
                f"<title>Quirks</title><p>Brackets 【like these】 in text.</p>"
                f"<p><a href='/about.html'>Dagger † in a link</a></p>"
                f"<iframe src='{html.escape(target)}'></iframe><img src='{html.escape(target)}' alt='remote'>"
            )
        if route == "/logo.png":
            return self._send(PIXEL, "image/png")
        path = (SITE / (route.lstrip("/") or "index.html")).resolve()
        if path.is_file() and SITE.resolve() in path.parents:
            return self._send(path.read_bytes())
        return self._send("<title>Not found</title><h1>Not found</h1>", status=404)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_site(slow_seconds: float = 30.0) -> Iterator[tuple[str, list[str]]]:
    """Serve the site on 127.0.0.1 (a free port); yields its base URL and the list of paths requested."""
    handler = type("Handler", (SiteHandler,), {"slow_seconds": slow_seconds})
    server = SiteServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.hits
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    """Serve the site until Ctrl-C, printing its address."""
    with serve_site() as (base_url, _hits):
        print(f"serving {SITE} at {base_url} (Ctrl-C to stop)")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
