"""JSON-lines transcripts: a run's events appended and flushed as they happen.

A transcript keeps one record per generation (its token ids and parsed
messages) plus the tool calls, results and run events. The per-token deltas
that stream a generation to live listeners repeat what the generation record
holds and would make up most of the file, so they are left out unless asked
for (``deltas=True``). Flushing per event means a run killed mid-way keeps
every completed step; reading tolerates a torn last line for the same reason.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from harmony_agent.events import Event, TokenDeltaEvent, event_from_json


class TranscriptError(ValueError):
    """A transcript line that is not a known event."""


def transcript_line(event: Event, *, deltas: bool = False) -> str | None:
    """The JSON line a transcript keeps for ``event`` (token deltas only when asked: replay rebuilds them)."""
    if isinstance(event, TokenDeltaEvent) and not deltas:
        return None
    return event.model_dump_json() + "\n"


class Transcript:
    """Append-only event log. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str], *, deltas: bool = False) -> None:
        self.path = Path(path)
        self.deltas = deltas
        self._lock = threading.Lock()  # sessions of one agent run on threads of their own
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = None

    def write(self, event: Event) -> None:
        line = transcript_line(event, deltas=self.deltas)
        if line is None:
            return
        with self._lock:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> Transcript:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_transcript(path: str | os.PathLike[str], *, strict: bool = False) -> Iterator[Event]:
    """Yield the events of a transcript.

    A torn final line (a killed run) is skipped; other bad lines raise
    TranscriptError with their line number when ``strict``, and are skipped
    otherwise.
    """
    with open(path, encoding="utf-8") as file:
        lines = file.readlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield event_from_json(line)
        except (ValidationError, json.JSONDecodeError) as exc:
            torn = number == len(lines) and not line.endswith("\n")
            if strict and not torn:
                raise TranscriptError(
                    f"{path}:{number}: not a transcript event: {exc.errors()[0]['msg'] if isinstance(exc, ValidationError) else exc}"
                ) from None
