"""The model's browser citations, made readable for people.

gpt-oss cites what it read as ``【cursor†Lfirst-Llast】``: the cursor of a page
the browser showed it, and the lines. That is right for the model's history,
but a person wants the page. The pages are known from the run's own events
(each browser view starts with ``[cursor] title (url)``), so answers can be
given with their sources: a list for the terminal and JSON, links for HTML.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from harmony_agent import events as ev
from harmony_agent.events import Source
from harmony_agent.tools.browser import CITATION

_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_VIEW_HEADER = re.compile(r"^\[(\d+)\] .*\((\S+)\)$", re.MULTILINE)


def browser_views(events: Iterable[ev.Event]) -> list[tuple[int, str, str]]:
    """(cursor, url, view text) of every browser view the model was shown."""
    views = []
    for event in events:
        if isinstance(event, ev.ToolResultEvent) and event.recipient.startswith("browser") and not event.is_error:
            for match in _VIEW_HEADER.finditer(event.content):
                views.append((int(match.group(1)), match.group(2), event.content))
    return views


def pages_seen(events: Iterable[ev.Event]) -> dict[int, str]:
    """Cursor -> URL for every page the browser showed in these events."""
    return {cursor: url for cursor, url, _ in browser_views(events)}


def _lines(match: re.Match) -> str:
    first, last = match.group(2), match.group(3)
    return f"L{first}" + (f"-L{last}" if last else "")


def sources(text: str, pages: dict[int, str]) -> list[Source]:
    """The citations in ``text``, in order of first appearance, one per cursor and lines."""
    found: dict[tuple[int, str], Source] = {}
    for match in CITATION.finditer(text):
        cursor, lines = int(match.group(1)), _lines(match)
        found.setdefault((cursor, lines), Source(cursor=cursor, url=pages.get(cursor), lines=lines))
    return list(found.values())


def is_web_link(url: str) -> bool:
    """Whether ``url`` may become a link in a page we write: http(s) with a host, nothing else.

    The address comes from a page the browser showed or from a transcript,
    and a ``javascript:`` or ``data:`` link would run in the reader's browser.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc) and not _CONTROL.search(url)


def cite_html(text: str, pages: dict[int, str]) -> str:
    """HTML of ``text`` with each citation a link to the page it cites (left as written when the page is unknown)."""
    out, last = [], 0
    for match in CITATION.finditer(text):
        out.append(html.escape(text[last : match.start()]))
        cursor = int(match.group(1))
        label = f"[{cursor}, {_lines(match).replace('-', '–')}]"
        url = pages.get(cursor)
        if url and is_web_link(url):
            out.append(f'<a href="{html.escape(url)}" title="{html.escape(url)}">{label}</a>')
        elif url:  # a javascript:, data: or file: address is shown, never followed
            out.append(f'{html.escape(label)} <span class="meta">({html.escape(url)})</span>')
        else:
            out.append(html.escape(label))
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


class PagesSeen:
    """The pages a conversation has shown so far, turn after turn, for citing sources of any later answer."""

    def __init__(self) -> None:
        self.pages: dict[int, str] = {}

    def see(self, event: ev.Event) -> None:
        if isinstance(event, ev.ToolResultEvent):
            self.pages.update(pages_seen([event]))

    def sources(self, text: str | None) -> list[Source]:
        return sources(text or "", self.pages)
