"""OCR engines for reading the screen: tesseract (the default) and, optionally, RapidOCR (PP-OCR on ONNX Runtime).

Each engine takes a PIL image and returns words (or short lines) with their
boxes in the image's pixels and a confidence from 0 to 100. Which engine and
settings read UI text best, and how fast, is measured by
``benchmarks/screen_reading.py`` on a corpus rendered on a real display.

tesseract runs in a process of its own, so its thread limit is set on that
process alone, never on ours: by default a long-lived worker
(``tesseract_worker.py``) that keeps the language model loaded (loading the
Latin script model costs ~0.5 s, more than reading a window), or the
``tesseract`` command once per image (``persistent=False``).
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Protocol

from harmony_agent.tools.computer.worker_process import stop_worker

WORKER = Path(__file__).with_name("tesseract_worker.py")

#: tesseract's OpenMP threads cost more than they save on UI-sized images; set for its process only.
TESSERACT_ENV = {"OMP_THREAD_LIMIT": "1"}

DEFAULT_VARIABLES = {"tessedit_do_invert": "0"}
Word = tuple[str, int, int, int, int, float]  # text, left, top, width, height, confidence (0-100)


def tesseract_environment() -> dict[str, str]:
    """tesseract's environment: what it needs (PATH, locale, its data folder) and its thread limit, nothing more.

    The worker lives as long as the tool, and an app on the display runs as the same user and can read its
    ``/proc/PID/environ``: the agent's keys must not be there.
    """
    kept = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL", "TESSDATA_PREFIX") if key in os.environ}
    return {**kept, **TESSERACT_ENV}


@functools.cache
def default_language() -> str:
    """``Latin`` (every Latin-script letter; benchmarks/screen_reading.py: 99% of characters against 88% for
    ``eng`` on UI text with diacritics) when its data is installed, else ``eng``."""
    try:
        listed = subprocess.run(
            ["tesseract", "--list-langs"], capture_output=True, text=True, timeout=10
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return "eng"
    return "Latin" if "Latin" in listed else "eng"


class OcrEngine(Protocol):
    name: str

    def words(self, image: Any, block: bool = False) -> list[Word]:
        """Text found in a PIL image, with boxes in its pixels; ``block`` when the image is one block of short
        lines (such as a sheet of cropped buttons), where sparse-text modes miss single characters."""
        ...

    def close(self) -> None:
        """Release what the engine holds (a worker process)."""
        ...


class Tesseract:
    """tesseract in a page-segmentation mode (11, sparse text, finds most of a UI's short strings) and a language.

    ``Latin`` (Debian's tesseract-ocr-script-latn) reads the accented and
    other Latin letters that ``eng`` turns into ASCII (Zoë Ørsted as "Zoé
    Orsted"); the benchmark weighs the two. ``variables`` are tesseract's
    ``-c`` settings.
    """

    def __init__(
        self,
        language: str | None = None,
        psm: int = 11,
        timeout: float = 30,
        variables: dict[str, str] | None = None,
        *,
        persistent: bool = True,
    ) -> None:
        """``language`` defaults to ``Latin`` where installed (else ``eng``); ``variables`` default to
        ``tessedit_do_invert=0`` (the screen is inverted before, when dark; tesseract's own retry of every
        line inverted cost time and read button borders as text)."""
        self.language = language or default_language()
        self.psm, self.timeout = psm, timeout
        self.variables = dict(DEFAULT_VARIABLES if variables is None else variables)
        self.persistent = persistent
        self.name = (
            f"tesseract {language} psm {psm}"
            + "".join(f" {k}={v}" for k, v in self.variables.items())
            + ("" if persistent else " (command)")
        )
        self._worker: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def words(self, image: Any, block: bool = False) -> list[Word]:
        psm = 6 if block else self.psm
        tsv = self._worker_tsv(image, psm) if self.persistent else self._command_tsv(image, psm)
        found = []
        for row in tsv.splitlines():
            fields = row.split("\t")
            if len(fields) < 12 or not fields[0].isdigit() or not fields[11].strip():
                continue  # the header, or a row for a block, paragraph or line rather than a word
            try:
                box = [int(value) for value in fields[6:10]]
                confidence = float(fields[10])
            except ValueError:
                continue
            found.append((fields[11].strip(), box[0], box[1], box[2], box[3], confidence))
        return found

    def _command_tsv(self, image: Any, psm: int) -> str:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        options = [part for key, value in self.variables.items() for part in ("-c", f"{key}={value}")]
        try:
            result = subprocess.run(
                ["tesseract", "stdin", "stdout", "--psm", str(psm), "-l", self.language, *options, "tsv"],
                input=buffer.getvalue(),
                capture_output=True,
                env=tesseract_environment(),
                timeout=self.timeout,
            )
        except FileNotFoundError:
            raise RuntimeError("tesseract is not installed: apt-get install tesseract-ocr") from None
        if result.returncode != 0:
            raise RuntimeError(f"tesseract failed: {result.stderr.decode(errors='replace').strip()[-300:]}")
        return result.stdout.decode("utf-8", errors="replace")

    def _worker_tsv(self, image: Any, psm: int) -> str:
        grey = image.convert("L")
        request = json.dumps(
            {
                "width": grey.width,
                "height": grey.height,
                "language": self.language,
                "psm": psm,
                "variables": self.variables,
            }
        ).encode()
        with self._lock:
            for attempt in range(2):  # a worker that died (killed, or crashed on an image) is replaced once
                worker = self._start_worker()
                try:
                    assert worker.stdin is not None and worker.stdout is not None
                    payload = grey.tobytes()
                    worker.stdin.write(
                        struct.pack(">I", len(request)) + request + struct.pack(">I", len(payload)) + payload
                    )
                    worker.stdin.flush()
                    header = worker.stdout.read(4)
                    if len(header) < 4:
                        raise BrokenPipeError("the tesseract worker ended")
                    answer = worker.stdout.read(struct.unpack(">I", header)[0]).decode("utf-8", errors="replace")
                except (BrokenPipeError, OSError):
                    self.close()
                    if attempt:
                        raise RuntimeError("the tesseract worker ended while reading an image") from None
                    continue
                if answer.startswith("ERROR: "):
                    raise RuntimeError(f"tesseract failed: {answer[7:]}")
                return answer
        raise AssertionError("unreachable")

    def _start_worker(self) -> subprocess.Popen:
        if self._worker is None or self._worker.poll() is not None:
            self._worker = subprocess.Popen(
                [sys.executable, "-I", str(WORKER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=tesseract_environment(),
            )
        return self._worker

    def close(self) -> None:
        """End the worker, if one runs (it also ends by itself when this process dies)."""
        worker, self._worker = self._worker, None
        stop_worker(worker)

    def __del__(self) -> None:
        if getattr(self, "_worker", None) is not None:
            self.close()


class RapidOcr:
    """PP-OCR detection and recognition on ONNX Runtime (``pip install rapidocr-onnxruntime``; models ship in the wheel)."""

    name = "rapidocr (PP-OCR, onnxruntime)"

    def __init__(self) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise RuntimeError("RapidOCR is not installed: pip install rapidocr-onnxruntime") from exc
        self._engine = RapidOCR()

    def words(self, image: Any, block: bool = False) -> list[Word]:
        import numpy

        result, _elapsed = self._engine(numpy.asarray(image.convert("RGB")))
        found = []
        for corners, text, score in result or []:
            xs, ys = [int(p[0]) for p in corners], [int(p[1]) for p in corners]
            found.append(
                (str(text).strip(), min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys), float(score) * 100)
            )
        return [word for word in found if word[0]]

    def close(self) -> None:
        pass


def engine(name: str = "tesseract", **options: Any) -> OcrEngine:
    """An engine by name: ``tesseract`` (options: language, psm) or ``rapidocr``."""
    if name == "tesseract":
        return Tesseract(**options)
    if name == "rapidocr":
        return RapidOcr()
    raise ValueError(f"unknown OCR engine {name!r}; use 'tesseract' or 'rapidocr'")


# -- symbols the language models cannot write ----------------------------------------------------------------------

#: Neither tesseract model (``Latin``, ``eng``) has ``×`` or ``→`` among its characters, and ``Latin`` drops Ñ's
#: small tilde at UI sizes, so they come back as ``x``, ``>`` and ``N``. These are told apart by the glyph's shape
#: in the pixels: a × floats above the baseline the digits beside it sit on; an arrow is wider than tall with a
#: shaft across it; an Ñ has a separate mark above its body.
SUSPECT = re.compile(r"[x>N]")


def _runs(flags: Any) -> list[tuple[int, int]]:
    """Runs of true values as (first, last) index pairs."""
    runs, start = [], None
    for index, flag in enumerate(flags):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            runs.append((start, index - 1))
            start = None
    if start is not None:
        runs.append((start, len(flags) - 1))
    return runs


def correct_symbols(image: Any, words: list[Word]) -> list[Word]:
    """``words`` read from ``image`` (dark text on light, the pixels OCR saw), with ``×``, ``→`` and ``Ñ`` put back
    where the glyphs show them. A word whose glyphs cannot be told apart one by one is left as it was read."""
    if not any(SUSPECT.search(word[0]) for word in words):
        return words
    import numpy

    pixels = numpy.asarray(image.convert("L"))
    return [_corrected(pixels, word) if SUSPECT.search(word[0]) else word for word in words]


def _corrected(pixels: Any, word: Word) -> Word:
    text, left, top, width, height, confidence = word
    lift = max(2, int(height * 0.45))  # room above the box for a mark tesseract left out of it
    crop = pixels[max(top - lift, 0) : top + height, left : left + width] < 128
    shift = top - max(top - lift, 0)
    glyphs = _runs(crop[shift:].any(axis=0))
    letters = [c for c in text if not c.isspace()]
    if len(glyphs) != len(letters) or not glyphs:
        return word
    body = crop[shift:]
    rows = [_runs(body[:, a : b + 1].any(axis=1)) for a, b in glyphs]
    spans = [(r[0][0], r[-1][1]) if r else (0, 0) for r in rows]
    digits = [spans[i] for i, c in enumerate(letters) if c.isdigit()]
    baseline = max((bottom for _, bottom in digits), default=None)
    tall = max((bottom - top_row + 1 for top_row, bottom in digits), default=0)
    fixed = list(letters)
    for index, char in enumerate(letters):
        a, b = glyphs[index]
        glyph_top, glyph_bottom = spans[index]
        glyph_height = glyph_bottom - glyph_top + 1
        wide = tall * 0.5  # a gap this wide between glyphs is a space tesseract left out
        apart = (index == 0 or a - glyphs[index - 1][1] > wide) and (
            index == len(glyphs) - 1 or glyphs[index + 1][0] - b > wide
        )
        if char == "x" and baseline is not None and apart and baseline - glyph_bottom >= 0.06 * tall:
            fixed[index] = "×"  # a word of its own between numbers, floating above their baseline
        elif char == ">" and (b - a + 1) >= 1.3 * glyph_height:
            shaft = body[glyph_top : glyph_bottom + 1, a : b + 1]
            if max((last - first + 1 for row in shaft for first, last in _runs(row)), default=0) >= 0.6 * (b - a + 1):
                fixed[index] = "→"
        elif char == "N":  # the body is the tallest run of rows; a small run just above it is a mark
            parts = _runs(crop[:, a : b + 1].any(axis=1))
            if len(parts) >= 2:
                main = max(range(len(parts)), key=lambda i: parts[i][1] - parts[i][0])
                body_height = parts[main][1] - parts[main][0] + 1
                if main > 0:
                    mark = parts[main - 1]
                    small = mark[1] - mark[0] + 1 <= 0.4 * body_height
                    if small and parts[main][0] - mark[1] - 1 <= 0.5 * body_height:
                        fixed[index] = "Ñ"
    if fixed == letters:
        return word
    if tall and " " not in text:  # put back the spaces tesseract dropped around the symbol (3x4=12: 3 × 4 = 12)
        pieces = [fixed[0]]
        for index in range(1, len(fixed)):
            pieces.append((" " if glyphs[index][0] - glyphs[index - 1][1] > tall * 0.5 else "") + fixed[index])
        return ("".join(pieces), left, top, width, height, confidence)
    rebuilt, letter = [], iter(fixed)
    for char in text:
        rebuilt.append(char if char.isspace() else next(letter))
    return ("".join(rebuilt), left, top, width, height, confidence)
