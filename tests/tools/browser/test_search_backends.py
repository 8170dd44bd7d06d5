"""Search backends, each against a fake service the test serves on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import threading
from urllib.parse import parse_qs, urlsplit

import pytest

from harmony_agent.tools import ToolError
from harmony_agent.tools.browser import (
    DuckDuckGoSearch,
    ExaSearch,
    LocalSearch,
    SearxngSearch,
    TavilySearch,
    YouSearch,
    backend_from_spec,
)
from helpers import ROOT

SITE = ROOT / "examples" / "site"

DUCK_HTML = """<html><body>
<div class="result results_links"><h2><a class="result__a" href="//duckduckgo.com/l/?uddg=https%3A%2F%2Fdocs.example.org%2Fa&rut=x">Doc A</a></h2>
<a class="result__snippet">First   snippet</a></div>
<div class="result results_links"><h2><a class="result__a" href="https://example.com/b">Doc B</a></h2>
<div class="result__snippet">Second snippet</div></div>
</body></html>"""


@pytest.fixture
def fake_service():
    """Answers like each search API; records method, path, query, headers and body of every request."""
    seen: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self, body: bytes | None = None) -> None:
            parts = urlsplit(self.path)
            seen.append(
                {
                    "method": self.command,
                    "path": parts.path,
                    "query": parse_qs(parts.query),
                    "headers": dict(self.headers),
                    "body": body,
                }
            )
            if parts.path.startswith("/broken"):
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b"boom")
                return
            if parts.path == "/html/":
                payload, kind = DUCK_HTML.encode(), "text/html"
            elif parts.path == "/search" and self.command == "GET" and self.headers.get("X-API-Key"):  # You.com
                payload, kind = (
                    json.dumps(
                        {"hits": [{"title": "Y", "url": "https://y.test/", "snippets": ["you", "said"]}]}
                    ).encode(),
                    "application/json",
                )
            else:
                key = "results"
                payload = json.dumps(
                    {
                        key: [
                            {"title": "R1", "url": "https://r1.test/", "content": "c1", "text": "t1"},
                            {"title": "R2", "url": "https://r2.test/", "content": "c2", "text": "t2"},
                            {"title": "no url"},
                        ]
                    }
                ).encode()
                kind = "application/json"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):
            self._answer()

        def do_POST(self):
            self._answer(self.rfile.read(int(self.headers.get("Content-Length", 0))))

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


async def test_local_search_ranks_pages_by_their_words():
    backend = LocalSearch(folder=SITE, base_url="http://site.test")
    results = await backend.search("opening hours wednesday", 3)
    assert results[0].url == "http://site.test/hours.html" and results[0].title == "Opening hours"
    assert "Wednesday" in results[0].snippet
    assert await backend.search("xylophone", 3) == []
    pages = LocalSearch([("u1", "Alpha", "apples and pears"), ("u2", "Beta", "pears only")])
    assert [r.url for r in await pages.search("apples", 5)] == ["u1"]


async def test_searxng_and_duckduckgo_need_no_key(fake_service):
    base, seen = fake_service
    results = await SearxngSearch(base).search("tides", 1)
    assert [(r.title, r.url, r.snippet) for r in results] == [("R1", "https://r1.test/", "c1")]
    assert seen[-1]["query"] == {"q": ["tides"], "format": ["json"]}
    duck = await DuckDuckGoSearch(base_url=base).search("docs", 5)
    assert [(r.title, r.url, r.snippet) for r in duck] == [
        ("Doc A", "https://docs.example.org/a", "First snippet"),
        ("Doc B", "https://example.com/b", "Second snippet"),
    ]
    assert seen[-1]["method"] == "POST" and seen[-1]["body"] == b"q=docs"


async def test_keyed_backends_send_their_keys_from_the_environment(fake_service, monkeypatch):
    base, seen = fake_service
    monkeypatch.setenv("EXA_API_KEY", "exa-key")
    monkeypatch.setenv("YDC_API_KEY", "you-key")
    monkeypatch.setenv("TAVILY_API_KEY", "tavily-key")
    exa = await ExaSearch(base_url=base).search("q", 2)
    assert [r.snippet for r in exa] == ["t1", "t2"] and seen[-1]["headers"]["x-api-key"] == "exa-key"
    assert json.loads(seen[-1]["body"])["numResults"] == 2
    you = await YouSearch(base_url=base).search("q", 2)
    assert [(r.url, r.snippet) for r in you] == [("https://y.test/", "you said")] and seen[-1]["headers"][
        "X-API-Key"
    ] == "you-key"
    tavily = await TavilySearch(base_url=base).search("q", 1)
    assert [r.url for r in tavily] == ["https://r1.test/"] and seen[-1]["headers"][
        "Authorization"
    ] == "Bearer tavily-key"


def test_a_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TAVILY_API_KEY", raising=False)
    with pytest.raises(ValueError, match="set TAVILY_API_KEY"):
        TavilySearch()
    with pytest.raises(ValueError, match="unknown search backend"):
        backend_from_spec("altavista")
    assert isinstance(backend_from_spec(f"local:{SITE}@http://x.test"), LocalSearch)


async def test_service_failures_become_errors_the_model_reads(fake_service):
    base, _seen = fake_service
    with pytest.raises(ToolError, match="HTTP 500"):
        await SearxngSearch(base + "/broken").search("x", 1)
    with pytest.raises(ToolError, match="searxng search failed"):
        await SearxngSearch("http://127.0.0.1:9", timeout=2).search("x", 1)  # nothing listens on the discard port
