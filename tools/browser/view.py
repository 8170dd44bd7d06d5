"""The model's view of pages, with the semantics gpt-oss was trained on.

A page is numbered lines of at most 80 characters, with links shown as
``【id†text】`` (``【id†text†domain】`` when the link leaves the site). A
display is a header ``[cursor] title (url)``, then ``**viewing lines [a - b]
of N**``, a blank line, and ``L{n}: ...`` lines, within a token budget. Every
display pushes a page on the session's cursor stack, and the model cites
``【cursor†L{a}-L{b}】``. Pages are snapshots: an old cursor shows what the
model saw then, never a newer page that happens to share its URL.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LINE_WIDTH = 80
FIND_CONTEXT_LINES = 4
FIND_MAX_RESULTS = 50
FIND_OPEN_OFFSET = 4  # a find result opens a few lines above its match


@dataclass
class Page:
    """One snapshot the model can scroll, search and follow links from."""

    url: str
    title: str
    lines: list[str]
    links: dict[int, str] = field(default_factory=dict)  # id -> URL
    controls: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> what the control is
    generation: int | None = None  # which live page state this came from; None for pages we composed
    source: str = "dom"  # dom, article, find, search or source
    link_lines: dict[int, int] = field(default_factory=dict)  # for find results: id -> line to open at
    parent: Page | None = None  # for find results: the page searched

    @property
    def live(self) -> bool:
        return self.generation is not None


_MARKER = re.compile(r"【[^】]*】")
_KEEP = "\x1f"  # stands for a space inside a marker while wrapping, so no marker is split across lines


def wrap_text(text: str) -> list[str]:
    """Page text as display lines: blank runs collapsed, long lines wrapped at 80 characters, markers kept whole."""
    lines: list[str] = []
    for raw in text.split("\n"):
        line = re.sub(r"[ \t\u00a0]+", " ", raw.replace(_KEEP, " ")).strip()
        if not line:
            if lines and lines[-1] != "":
                lines.append("")
            continue
        line = _MARKER.sub(lambda m: m.group(0).replace(" ", _KEEP), line)
        wrapped = textwrap.wrap(line, LINE_WIDTH, break_long_words=False, break_on_hyphens=False) or [""]
        lines.extend(part.replace(_KEEP, " ") for part in wrapped)
    while lines and lines[-1] == "":
        lines.pop()
    return lines or [""]


def render(
    page: Page, cursor: int, loc: int, num_lines: int | None, max_tokens: int, count_tokens: Callable[[str], int]
) -> str:
    """The display of ``page`` from line ``loc``: ``num_lines`` lines, or as many as fit the token budget."""
    total = len(page.lines)
    start = min(max(loc, 0), max(total - 1, 0))
    header = f"[{cursor}] {page.title} ({page.url})"
    shown: list[str] = []
    used = count_tokens(header) + 20
    for number in range(start, total):
        line = f"L{number}: {page.lines[number]}"
        if num_lines is not None and num_lines > 0 and len(shown) >= num_lines:
            break
        cost = count_tokens(line) + 1
        if (num_lines is None or num_lines <= 0) and shown and used + cost > max_tokens:
            break
        shown.append(line)
        used += cost
    end = start + len(shown) - 1
    return "\n".join([header, f"**viewing lines [{start} - {max(end, start)}] of {total - 1}**", "", *shown])


def find(page: Page, pattern: str) -> Page:
    """A page of the matches of ``pattern`` (case-insensitive) in ``page``; each match links back to its line."""
    needle = pattern.lower()
    lines: list[str] = []
    links: dict[int, str] = {}
    link_lines: dict[int, int] = {}
    for number, text in enumerate(page.lines):
        if needle not in text.lower():
            continue
        index = len(links)
        if index >= FIND_MAX_RESULTS:
            break
        links[index] = page.url
        link_lines[index] = max(number - FIND_OPEN_OFFSET, 0)
        lines.append(f"# 【{index}†match at L{number}】")
        lines.extend(page.lines[number : number + FIND_CONTEXT_LINES])
        lines.append("")
    if not links:
        lines = [f"No `find` results for pattern: `{pattern}`"]
    return Page(
        url=f"{page.url}#find={pattern}",
        title=f"Find results for text: `{pattern}` in `{page.title}`",
        lines=lines or [""],
        links=links,
        link_lines=link_lines,
        source="find",
        parent=page,
    )


def escape_text(text: str) -> str:
    """Page text must not look like the view's own link markers."""
    return text.replace("【", "〖").replace("】", "〗")


def escape_marker_text(text: str) -> str:
    """Text inside a marker also must not contain its separator."""
    return escape_text(text).replace("†", "‡")
