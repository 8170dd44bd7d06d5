"""JSON-lines transcripts: every event appended and flushed as it happens.

Flushing per event means a run killed mid-way keeps every completed step.
Reading tolerates a torn last line for the same reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from .events import Event, event_from_json


class TranscriptError(ValueError):
    """A transcript line that is not a known event."""


class Transcript:
    """Append-only event log. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = None

    def write(self, event: Event) -> None:
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write(event.model_dump_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "Transcript":
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
                raise TranscriptError(f"{path}:{number}: not a transcript event: {exc.errors()[0]['msg'] if isinstance(exc, ValidationError) else exc}") from None
