"""Things on screen that carry no text: empty input fields, check boxes, sliders, icon buttons.

OCR cannot report them and a text-only model cannot click what it is not
told of. Two sources, in order:

- the X window tree, where a toolkit makes one window per widget (Tk,
  Motif, Athena/xcalc): every viewable leaf window of the focused window
  that no OCR line falls in is an element without text, with its box;
- simple image analysis otherwise (GTK and Qt draw everything in one
  window; the accessibility tree usually covers them, see
  ``accessibility.py``): closed rectangles outlined in the window's pixels
  (an input box's border, a check box) that hold no text.

Each element is named by its shape (field, box, check box, vertical or
horizontal bar) so the model can tell an entry from a scrollbar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MIN_SIDE = 6


@dataclass(frozen=True)
class Element:
    kind: str
    x: int
    y: int
    width: int
    height: int
    source: str

    @property
    def center(self) -> tuple[int, int]:
        return self.x + self.width // 2, self.y + self.height // 2

    def describe(self) -> str:
        return f"- {self.kind} {self.width}x{self.height} (no text) at ({self.center[0]}, {self.center[1]})"


def shape(width: int, height: int) -> str:
    """A name for a box from its proportions alone."""
    if 12 <= height <= 60 and width >= 3 * height:
        return "field"
    if width <= 24 and height >= 3 * width:
        return "vertical bar"
    if height <= 24 and width >= 6 * height:
        return "horizontal bar"
    if width <= 24 and height <= 24 and abs(width - height) <= 4:
        return "check box or icon"
    return "box"


def _holds_text(box: tuple[int, int, int, int], text_boxes: list[tuple[int, int, int, int]]) -> bool:
    x, y, width, height = box
    for left, top, w, h in text_boxes:
        cx, cy = left + w / 2, top + h / 2
        if x <= cx <= x + width and y <= cy <= y + height:
            return True
    return False


def from_window_tree(
    size: tuple[int, int] | None,
    leaves: list[tuple[int, int, int, int]],
    text_boxes: list[tuple[int, int, int, int]],
    limit: int = 200,
) -> list[Element]:
    """The leaf windows of a window of ``size`` (boxes in screen coordinates, read by the display's X worker)
    that hold no text: not slivers, nor one covering the whole window."""
    if size is None:
        return []
    found: list[Element] = []
    for x, y, width, height in leaves:
        if len(found) >= limit:
            break
        if min(width, height) < MIN_SIDE or (width >= size[0] - 4 and height >= size[1] - 4):
            continue
        if not _holds_text((x, y, width, height), text_boxes):
            found.append(Element(shape(width, height), x, y, width, height, source="window"))
    return sorted(found, key=lambda e: (e.y, e.x))


def from_pixels(
    image: Any, origin: tuple[int, int], text_boxes: list[tuple[int, int, int, int]], limit: int = 60
) -> list[Element]:
    """Closed rectangular outlines in a window's pixels that hold no text (an empty input box, a check box).

    An outline is a run of one colour, darker than the inside, along four
    sides; found from horizontal runs paired with a matching run below and
    checked down both sides. Coarse by design: boxes drawn with gradients
    or shadows only are missed.
    """
    import numpy

    grey = numpy.asarray(image.convert("L"), dtype=numpy.int16)
    _height, width = grey.shape
    # Horizontal edges: pixels clearly darker than the pixel below or above them.
    darker_below = numpy.zeros_like(grey, dtype=bool)
    darker_below[:-1] = grey[:-1] + 30 < grey[1:]
    darker_above = numpy.zeros_like(grey, dtype=bool)
    darker_above[1:] = grey[1:] + 30 < grey[:-1]
    tops = _runs(darker_below, 12)
    bottoms = _runs(darker_above, 12)
    found: list[Element] = []
    for row, start, end in tops:
        # The matching bottom edge: the nearest run below with the same extent (rounded corners allow a little).
        below = [r for r, s, e in bottoms if MIN_SIDE <= r - row <= 200 and abs(s - start) <= 2 and abs(e - end) <= 2]
        if not below:
            continue
        bottom = min(below)
        inside = grey[row + 3 : bottom - 2, start + 3 : end - 2]  # borders may be a few pixels thick
        if inside.size == 0:
            continue
        surface = float(numpy.median(inside))
        if (abs(inside - surface) <= 10).mean() < 0.97:
            continue  # not a plain surface (a caret aside): text, an image, a gradient
        level = surface - 30
        middle = (row + bottom) // 2
        left = next((c for c in range(start - 1, max(start - 7, -1), -1) if grey[middle, c] < level), None)
        right = next((c for c in range(end + 1, min(end + 7, width)) if grey[middle, c] < level), None)
        if left is None or right is None:
            continue
        sides = slice(row + 4, bottom - 3)
        if grey[sides, left].max() >= level or grey[sides, right].max() >= level:
            continue  # no straight side: two lines that happen to line up, not a box
        box = (left + origin[0], row + origin[1], right - left + 1, bottom - row + 1)
        if not _holds_text(box, text_boxes):
            found.append(Element(shape(box[2], box[3]), *box, source="pixels"))
        if len(found) >= limit:
            break
    return _without_nested(found)


def _runs(mask: Any, minimum: int) -> list[tuple[int, int, int]]:
    """(row, first column, last column) of every horizontal run of True at least ``minimum`` long."""
    import numpy

    found = []
    padded = numpy.zeros((mask.shape[0], mask.shape[1] + 2), dtype=numpy.int8)
    padded[:, 1:-1] = mask
    changes = numpy.diff(padded, axis=1)
    for row in numpy.nonzero(changes.any(axis=1))[0]:
        starts = numpy.nonzero(changes[row] == 1)[0]
        ends = numpy.nonzero(changes[row] == -1)[0] - 1
        found += [(int(row), int(s), int(e)) for s, e in zip(starts, ends) if e - s + 1 >= minimum]
    return found


def _without_nested(elements: list[Element]) -> list[Element]:
    kept: list[Element] = []
    for element in sorted(elements, key=lambda e: -(e.width * e.height)):
        if not any(
            k.x <= element.x
            and k.y <= element.y
            and element.x + element.width <= k.x + k.width
            and element.y + element.height <= k.y + k.height
            for k in kept
        ):
            kept.append(element)
    return sorted(kept, key=lambda e: (e.y, e.x))
