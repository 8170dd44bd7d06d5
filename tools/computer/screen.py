"""Seeing the screen as text: the window list with absolute geometry, and OCR lines with click points.

Window geometry comes from ``xwininfo``, which reports a window's absolute
position; ``wmctrl`` and xdotool are off by the title bar under openbox.
OCR is tesseract in sparse-text mode (psm 11), which finds far more of a
UI's short strings than the default page mode, run on the focused window
(or the whole screen) and merged from words into lines.

Nothing here touches the process environment: helper programs get the
display's environment, tesseract gets its thread limit on its own command
line's environment, and pixels and the window tree are read by the
display's X worker, which holds the display's cookie (``xclient.py``).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from typing import Any

from harmony_agent.sandboxes.display import VirtualDisplay
from harmony_agent.tools.computer.elements import Element, from_pixels, from_window_tree
from harmony_agent.tools.computer.ocr import OcrEngine, Tesseract, correct_symbols
from harmony_agent.tools.computer.xclient import DisplayClient

#: Glyphs OCR reads off widget borders and separators; a "word" made only of these is not text.
BORDERS = "|¦│"


@dataclass(frozen=True)
class Window:
    id: int
    title: str
    x: int
    y: int
    width: int
    height: int
    focused: bool = False


@dataclass(frozen=True)
class TextLine:
    text: str
    left: int
    top: int
    width: int
    height: int

    @property
    def center(self) -> tuple[int, int]:
        return self.left + self.width // 2, self.top + self.height // 2


class Screen:
    """Reads one display: windows, pixels and text."""

    def __init__(
        self,
        display: VirtualDisplay,
        *,
        scale: int = 2,
        min_confidence: float = 40.0,
        ocr: OcrEngine | None = None,
        symbols: bool = True,
    ) -> None:
        """``symbols``: put back ×, → and Ñ where the glyphs show them (see ``ocr.correct_symbols``)."""
        self.display = display
        self.symbols = symbols
        self.ocr = ocr or Tesseract()
        self.scale = scale
        self.min_confidence = min_confidence
        #: The X connection of the agent's own to this display (pixels, window tree; the tool's input too).
        self.x = DisplayClient(display)
        #: The last image read by OCR and its region, so elements without text are found in the same pixels.
        self.last_grab: tuple[Any, tuple[int, int]] | None = None

    def _run(self, *command: str) -> str:
        result = subprocess.run(list(command), env=self.display.env(), capture_output=True, text=True, timeout=10)
        return result.stdout if result.returncode == 0 else ""

    def size(self) -> tuple[int, int]:
        return self.display.width, self.display.height

    def focused_id(self) -> int | None:
        text = self._run("xdotool", "getactivewindow").strip()
        return int(text) if text.isdigit() else None

    def windows(self) -> list[Window]:
        focused = self.focused_id()
        found = []
        for line in self._run("wmctrl", "-l").splitlines():
            parts = line.split(None, 3)
            if len(parts) < 3:
                continue
            window_id = int(parts[0], 16)
            title = parts[3] if len(parts) > 3 else ""
            geometry = self.geometry(window_id)
            if geometry is None:
                continue
            found.append(Window(window_id, title, *geometry, focused=window_id == focused))
        return found

    def geometry(self, window_id: int) -> tuple[int, int, int, int] | None:
        info = self._run("xwininfo", "-id", str(window_id))
        values = {
            key: int(value)
            for key, value in re.findall(r"(Absolute upper-left X|Absolute upper-left Y|Width|Height):\s+(-?\d+)", info)
        }
        if len(values) < 4:
            return None
        return values["Absolute upper-left X"], values["Absolute upper-left Y"], values["Width"], values["Height"]

    def grab(self, region: tuple[int, int, int, int] | None = None):
        """Pixels of the screen or a region (left, top, width, height), as a PIL image."""
        left, top, width, height = region or (0, 0, *self.size())
        left, top = max(left, 0), max(top, 0)
        width = min(width, self.display.width - left)
        height = min(height, self.display.height - top)
        return self.x.grab(left, top, width, height)

    def prepare(self, image: Any) -> Any:
        """Grey, dark text on light (a dark theme is inverted: tesseract reads dark-on-light best), upscaled.

        Pure black is left out of the judgement: it is the bare root window
        around the windows when the whole screen is read.
        """
        from PIL import Image, ImageOps

        image = ImageOps.grayscale(image)
        histogram = image.histogram()[1:]
        shown = sum(histogram)
        if shown and sum(value * count for value, count in enumerate(histogram, 1)) / shown < 110:
            image = ImageOps.invert(image)
        if self.scale != 1:
            image = image.resize((image.width * self.scale, image.height * self.scale), Image.Resampling.LANCZOS)
        return image

    def read_words(self, region: tuple[int, int, int, int] | None = None) -> list[tuple[str, int, int, int, int]]:
        """OCR words (or the engine's short lines) in screen coordinates, before they are joined into lines."""
        left, top = (max(region[0], 0), max(region[1], 0)) if region else (0, 0)
        shot = self.grab(region)
        self.last_grab = (shot, (left, top))
        image = self.prepare(shot)
        words = self.ocr.words(image)
        if self.symbols:
            words = correct_symbols(image, words)
        return [
            (text, x // self.scale + left, y // self.scale + top, w // self.scale, h // self.scale)
            for text, x, y, w, h, confidence in words
            if confidence >= self.min_confidence and text.strip(BORDERS)
        ]

    def read_text(self, region: tuple[int, int, int, int] | None = None) -> list[TextLine]:
        """OCR lines in screen coordinates."""
        return merge_words(self.read_words(region))

    def untexted(self, window_id: int, text_boxes: list[tuple[int, int, int, int]]) -> list[Element]:
        """Elements without text in a window: its leaf X windows that hold no text, or, for a window drawn as one
        surface, outlined boxes in the pixels OCR just read."""
        found = from_window_tree(*self.x.leaves(window_id), text_boxes)
        if not found and self.last_grab is not None:
            image, origin = self.last_grab
            found = from_pixels(image, origin, text_boxes)
        return found

    def read_boxes(
        self, elements: list[Element], scale: int = 3, gap: int = 30
    ) -> tuple[list[TextLine], list[Element]]:
        """Read small boxes one by one in a single OCR call: each box cropped, enlarged and laid on a sheet of its
        own row, read as one block. Sparse-text OCR of a whole window misses single characters on buttons (the
        digits of xcalc); read this way they are found. Returns the lines read and the boxes still without text.
        """
        from PIL import Image, ImageOps

        if not elements or self.last_grab is None:
            return [], elements
        image, (left, top) = self.last_grab
        crops, inked = [], []
        for element in elements:
            crop = ImageOps.grayscale(
                image.crop(
                    (
                        element.x - left,
                        element.y - top,
                        element.x - left + element.width,
                        element.y - top + element.height,
                    )
                )
            )
            crop = _without_caret(crop)
            if not _has_ink(crop):
                continue  # blank inside its borders (an empty field): OCR would only imagine something there
            if min(crop.size) >= 12:
                crop = crop.crop((2, 2, crop.width - 2, crop.height - 2))  # borders read as letters (or hide them)
            inked.append(element)
            crops.append(self.prepare(crop).resize((crop.width * scale, crop.height * scale), Image.Resampling.LANCZOS))
        if not crops:
            return [], elements
        sheet = Image.new("L", (max(c.width for c in crops) + 2 * gap, sum(c.height + gap for c in crops) + gap), 255)
        rows, y = [], gap
        for crop in crops:
            sheet.paste(crop, (gap, y))
            rows.append((y, y + crop.height))
            y += crop.height + gap
        read: dict[int, list[tuple[int, str]]] = {}
        for text, x, word_top, _width, height, confidence in self.ocr.words(sheet, block=True):
            centre = word_top + height / 2
            row = next((i for i, (a, b) in enumerate(rows) if a - gap / 2 <= centre <= b + gap / 2), None)
            if row is not None and confidence >= self.min_confidence and text.strip(BORDERS):
                read.setdefault(row, []).append((x, text))
        lines = [
            TextLine(" ".join(word for _, word in sorted(read[index])), e.x, e.y, e.width, e.height)
            for index, e in enumerate(inked)
            if index in read
        ]
        read_elements = {id(e) for index, e in enumerate(inked) if index in read}
        return lines, [e for e in elements if id(e) not in read_elements]

    def close(self) -> None:
        self.ocr.close()
        self.x.close()


def _without_caret(image: Any, margin: int = 3) -> Any:
    """A box with its text caret painted over: a line one or two pixels wide through nearly all the inside
    height. Glued to the last letter, a caret turned "Oslo" into "Osid"; letters such as l stop well short."""
    import numpy
    from PIL import Image

    grey = numpy.asarray(image, dtype=numpy.int16).copy()
    inside = grey[margin:-margin, margin:-margin]
    if inside.size == 0:
        return image
    surface = numpy.median(inside)
    full = (abs(inside - surface) > 60).sum(axis=0) >= 0.9 * inside.shape[0]
    column = 0
    while column < full.size:
        if not full[column]:
            column += 1
            continue
        end = column
        while end + 1 < full.size and full[end + 1]:
            end += 1
        if end - column < 2:
            inside[:, column : end + 1] = surface
        column = end + 1
    grey[margin:-margin, margin:-margin] = inside
    return Image.fromarray(grey.astype(numpy.uint8))


def _has_ink(image: Any, margin: int = 3, contrast: int = 60) -> bool:
    """Whether a box holds marks inside its border: pixels far from its plain surface across more than two
    columns (a text caret is one)."""
    import numpy

    grey = numpy.asarray(image, dtype=numpy.int16)[margin:-margin, margin:-margin]
    if grey.size == 0:
        return False
    ink = abs(grey - numpy.median(grey)) > contrast
    return int(ink.any(axis=0).sum()) > 2


def merge_words(words: list[tuple[str, int, int, int, int]]) -> list[TextLine]:
    """Join words into lines: the same row (centres within half a line's height) and gaps under two heights.

    O(n log n): words sorted by their vertical centre fall into rows in one
    sweep; each row, sorted left to right, is cut where a gap is wider than
    twice the line's height. (The pairwise merge this replaces was cubic:
    46 s for the 800 words of a full screen.)
    """
    rows: list[list[tuple[str, int, int, int, int]]] = []
    row_centre = row_height = 0.0
    for word in sorted(words, key=lambda w: w[2] + w[4] / 2):
        centre = word[2] + word[4] / 2
        if rows and abs(centre - row_centre) <= max(row_height, word[4]) / 2:
            row = rows[-1]
            row.append(word)
            row_centre += (centre - row_centre) / len(row)
            row_height = max(row_height, word[4])
        else:
            rows.append([word])
            row_centre, row_height = centre, word[4]
    lines = []
    for row in rows:
        row.sort(key=lambda w: w[1])
        height = max(w[4] for w in row)
        group = [row[0]]
        right = row[0][1] + row[0][3]
        for word in row[1:]:
            if word[1] - right > 2 * height:
                lines.append(_line(group))
                group = []
            group.append(word)
            right = max(right, word[1] + word[3])
        lines.append(_line(group))
    return sorted(lines, key=lambda t: (t.top, t.left))


def _line(group: list[tuple[str, int, int, int, int]]) -> TextLine:
    left = min(w[1] for w in group)
    top = min(w[2] for w in group)
    right = max(w[1] + w[3] for w in group)
    bottom = max(w[2] + w[4] for w in group)
    return TextLine(" ".join(w[0] for w in group), left, top, right - left, bottom - top)
