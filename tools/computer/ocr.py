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
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Protocol

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
        if worker is not None:
            for stream in (worker.stdin, worker.stdout):
                try:
                    stream.close() if stream else None
                except OSError:
                    pass
            try:
                worker.wait(timeout=2)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()

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
