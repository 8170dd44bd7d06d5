"""A tiny site of in-memory pages on 127.0.0.1, and the calls browser tests make on it."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any


@contextlib.contextmanager
def serve_pages(pages: Mapping[str, str]) -> Iterator[str]:
    """Serve ``pages`` (path -> HTML) until the block ends; yields the base URL.

    Unknown paths are 404; a page reading ``REDIRECT URL`` answers 302; ``*.js`` is served as JavaScript.
    """

    class Pages(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            body = pages.get(path)
            if body is not None and body.startswith("REDIRECT "):
                self.send_response(302)
                self.send_header("Location", body.split(" ", 1)[1])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = (body or "not found").encode()
            self.send_response(200 if body else 404)
            kind = "text/javascript" if path.endswith(".js") else "text/html; charset=utf-8"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def call(tool: Any, name: str, **arguments: object) -> Any:
    """Call ``browser.NAME`` on a browser tool with ``arguments``, as the model would."""
    from harmony_agent.tools import ToolCall

    return await tool.process(ToolCall(f"browser.{name}", "analysis", json.dumps(arguments)))


def marker(view: str, text: str) -> int:
    """The number of the element marked ``【N†TEXT…】`` in a browser view (the assertion names what is missing)."""
    match = re.search(r"【(\d+)†" + re.escape(text) + r"[】 (;]", view)
    assert match, f"no marker {text!r} in:\n{view}"
    return int(match.group(1))
