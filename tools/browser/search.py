"""Search backends for ``browser.search``: pluggable, each a query in and ranked results out.

- ``LocalSearch``: a folder of HTML/text files or a list of pages, ranked by term overlap; no network.
- ``SearxngSearch``: a SearXNG instance's JSON API; no key.
- ``DuckDuckGoSearch``: DuckDuckGo's HTML results page; no key.
- ``ExaSearch``, ``YouSearch``, ``TavilySearch``: keyed APIs, keys from the environment.

``backend_from_spec`` builds one from a short string, for the CLI.
"""

from __future__ import annotations

import math
import os
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from harmony_agent.tools.base import ToolError


@dataclass(frozen=True)
class SearchResult:
    title: str
    url: str
    snippet: str = ""


class SearchBackend(ABC):
    """Turns a query into results. Raise ToolError for failures the model should be told of."""

    name: str = "search"

    @abstractmethod
    async def search(self, query: str, topn: int) -> list[SearchResult]: ...


_WORD = re.compile(r"\w+", re.UNICODE)


def _terms(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _plain_text(html: str) -> tuple[str, str]:
    """(title, text) of an HTML document, for indexing local pages."""
    import lxml.html

    try:
        tree = lxml.html.fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return "", html
    for bad in tree.xpath("//script|//style"):
        bad.drop_tree()
    title = (tree.findtext(".//title") or "").strip()
    body = tree.find(".//body")
    return title, " ".join(" ".join((body if body is not None else tree).itertext()).split())


class LocalSearch(SearchBackend):
    """Search over pages you give it: a folder served at ``base_url``, or (url, title, text) triples.

    Ranking is TF-IDF over words, which is plenty for a test site or a
    folder of saved documents.
    """

    name = "local"

    def __init__(
        self,
        pages: Iterable[tuple[str, str, str]] | None = None,
        *,
        folder: str | Path | None = None,
        base_url: str = "",
    ) -> None:
        self.pages: list[tuple[str, str, str]] = list(pages or [])
        if folder is not None:
            root = Path(folder)
            for path in sorted(root.rglob("*")):
                if path.suffix.lower() not in (".html", ".htm", ".txt", ".md") or not path.is_file():
                    continue
                raw = path.read_text(errors="replace")
                title, text = _plain_text(raw) if path.suffix.lower() in (".html", ".htm") else (path.stem, raw)
                url = (
                    f"{base_url.rstrip('/')}/{path.relative_to(root).as_posix()}"
                    if base_url
                    else path.resolve().as_uri()
                )
                self.pages.append((url, title or path.stem, text))
        self._counts = [Counter(_terms(f"{title} {title} {text}")) for _url, title, text in self.pages]
        documents = len(self.pages) or 1
        frequency = Counter(term for counts in self._counts for term in counts)
        self._idf = {term: math.log(1 + documents / df) for term, df in frequency.items()}

    async def search(self, query: str, topn: int) -> list[SearchResult]:
        terms = set(_terms(query))
        scored = []
        for index, counts in enumerate(self._counts):
            score = sum((1 + math.log(counts[t])) * self._idf.get(t, 0) for t in terms if counts[t])
            if score > 0:
                scored.append((score, index))
        scored.sort(key=lambda item: (-item[0], item[1]))
        results = []
        for _score, index in scored[:topn]:
            url, title, text = self.pages[index]
            results.append(SearchResult(title, url, _snippet(text, terms)))
        return results


def _snippet(text: str, terms: set[str], width: int = 200) -> str:
    lowered = text.lower()
    hits = [lowered.find(t) for t in terms if lowered.find(t) >= 0]
    start = max(min(hits) - 60, 0) if hits else 0
    piece = " ".join(text[start : start + width].split())
    return ("…" if start else "") + piece + ("…" if start + width < len(text) else "")


class _HttpBackend(SearchBackend):
    """Shared plumbing: one HTTP client, a timeout, and errors in words."""

    key_variable: str | None = None

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None, timeout: float = 15.0) -> None:
        self.api_key = api_key or (os.environ.get(self.key_variable) if self.key_variable else None)
        if self.key_variable and not self.api_key:
            raise ValueError(f"{type(self).__name__} needs an API key: set {self.key_variable} or pass api_key=")
        self.base_url = (base_url or self.default_url).rstrip("/")
        self.timeout = timeout

    default_url = ""

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=True) as client:
                response = await client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise ToolError(f"{self.name} search failed: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise ToolError(f"{self.name} search failed: HTTP {response.status_code} {response.text[:200]}")
        return response

    async def _json(self, method: str, url: str, **kwargs: Any) -> Mapping[str, Any]:
        response = await self._request(method, url, **kwargs)
        try:
            data = response.json()
        except ValueError:
            raise ToolError(f"{self.name} search returned something that is not JSON") from None
        if not isinstance(data, Mapping):
            raise ToolError(f"{self.name} search returned an unexpected shape")
        return data


def _results(items: Any, title: str, url: str, snippet: str, topn: int) -> list[SearchResult]:
    results = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and item.get(url):
            results.append(
                SearchResult(
                    str(item.get(title) or item[url]), str(item[url]), " ".join(str(item.get(snippet) or "").split())
                )
            )
    return results[:topn]


class SearxngSearch(_HttpBackend):
    """A SearXNG instance (its JSON format must be enabled in the instance's settings)."""

    name = "searxng"

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(base_url=base_url, **kwargs)

    async def search(self, query: str, topn: int) -> list[SearchResult]:
        data = await self._json("GET", f"{self.base_url}/search", params={"q": query, "format": "json"})
        return _results(data.get("results"), "title", "url", "content", topn)


class DuckDuckGoSearch(_HttpBackend):
    """DuckDuckGo's HTML results page; no key, and as stable as a scraped page can be."""

    name = "duckduckgo"
    default_url = "https://html.duckduckgo.com"

    async def search(self, query: str, topn: int) -> list[SearchResult]:
        import lxml.html

        response = await self._request(
            "POST", f"{self.base_url}/html/", data={"q": query}, headers={"User-Agent": "Mozilla/5.0 (harmony-agent)"}
        )
        tree = lxml.html.fromstring(response.text or "<html/>")
        results: list[SearchResult] = []
        for block in tree.xpath("//div[contains(@class, 'result')][.//a[contains(@class, 'result__a')]]"):
            anchor = block.xpath(".//a[contains(@class, 'result__a')]")[0]
            href = anchor.get("href", "")
            target = parse_qs(urlsplit(href).query).get("uddg", [href])[0]  # unwrap DuckDuckGo's redirect links
            snippet = " ".join(" ".join(block.xpath(".//*[contains(@class, 'result__snippet')]//text()")).split())
            if target.startswith("http") and all(r.url != target for r in results):
                results.append(SearchResult(" ".join(anchor.text_content().split()), target, snippet))
        return results[:topn]


class ExaSearch(_HttpBackend):
    name = "exa"
    key_variable = "EXA_API_KEY"
    default_url = "https://api.exa.ai"

    async def search(self, query: str, topn: int) -> list[SearchResult]:
        data = await self._json(
            "POST",
            f"{self.base_url}/search",
            headers={"x-api-key": self.api_key or ""},
            json={"query": query, "numResults": topn, "contents": {"text": {"maxCharacters": 300}}},
        )
        return _results(data.get("results"), "title", "url", "text", topn)


class YouSearch(_HttpBackend):
    name = "you"
    key_variable = "YDC_API_KEY"
    default_url = "https://api.ydc-index.io"

    async def search(self, query: str, topn: int) -> list[SearchResult]:
        data = await self._json(
            "GET",
            f"{self.base_url}/search",
            params={"query": query, "num_web_results": topn},
            headers={"X-API-Key": self.api_key or ""},
        )
        hits = [
            {**hit, "snippet": " ".join(hit.get("snippets") or [hit.get("description", "")])}
            for hit in data.get("hits", [])
            if isinstance(hit, Mapping)
        ]
        return _results(hits, "title", "url", "snippet", topn)


class TavilySearch(_HttpBackend):
    name = "tavily"
    key_variable = "TAVILY_API_KEY"
    default_url = "https://api.tavily.com"

    async def search(self, query: str, topn: int) -> list[SearchResult]:
        data = await self._json(
            "POST",
            f"{self.base_url}/search",
            headers={"Authorization": f"Bearer {self.api_key}"},
            json={"query": query, "max_results": topn},
        )
        return _results(data.get("results"), "title", "url", "content", topn)


def backend_from_spec(spec: str) -> SearchBackend:
    """``duckduckgo``, ``searxng:URL``, ``exa``, ``you``, ``tavily``, or ``local:FOLDER[@BASE_URL]``."""
    kind, _, rest = spec.partition(":")
    if kind == "duckduckgo":
        return DuckDuckGoSearch()
    if kind == "searxng" and rest:
        return SearxngSearch(rest)
    if kind == "local" and rest:
        folder, _, base_url = rest.partition("@")
        return LocalSearch(folder=folder, base_url=base_url)
    if kind in ("exa", "you", "tavily"):
        backends: dict[str, type[SearchBackend]] = {"exa": ExaSearch, "you": YouSearch, "tavily": TavilySearch}
        return backends[kind]()
    raise ValueError(
        f"unknown search backend {spec!r}: use duckduckgo, searxng:URL, exa, you, tavily or local:FOLDER[@BASE_URL]"
    )
