"""Seeing the screen as text: the window list with absolute geometry, and OCR lines with click points.

Window geometry comes from ``xwininfo``, which reports a window's absolute
position; ``wmctrl`` and xdotool are off by the title bar under openbox.
OCR is tesseract in sparse-text mode (psm 11), which finds far more of a
UI's short strings than the default page mode, run on the focused window
(or the whole screen) and merged from words into lines.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from typing import Any

from sandboxes.display import VirtualDisplay

os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # tesseract's threads cost more than they save on small images


def bind_process_to(display: VirtualDisplay) -> None:
    """Point this process's own X clients (mss, pyautogui) at the display: they read DISPLAY and XAUTHORITY.

    One process drives one display at a time this way; the display's
    programs get their environment from the display itself.
    """
    env = display.env()
    os.environ["DISPLAY"] = env["DISPLAY"]
    if "XAUTHORITY" in env:
        os.environ["XAUTHORITY"] = env["XAUTHORITY"]


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

    def __init__(self, display: VirtualDisplay, *, scale: int = 2, min_confidence: float = 40.0) -> None:
        self.display = display
        self.scale = scale
        self.min_confidence = min_confidence
        self._grabber: Any = None

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
        values = {key: int(value) for key, value in re.findall(r"(Absolute upper-left X|Absolute upper-left Y|Width|Height):\s+(-?\d+)", info)}
        if len(values) < 4:
            return None
        return values["Absolute upper-left X"], values["Absolute upper-left Y"], values["Width"], values["Height"]

    def grab(self, region: tuple[int, int, int, int] | None = None):
        """Pixels of the screen or a region (left, top, width, height), as a PIL image."""
        import mss
        from PIL import Image

        if self._grabber is None:
            bind_process_to(self.display)
            self._grabber = mss.MSS(display=self.display.display)
        left, top, width, height = region or (0, 0, *self.size())
        left, top = max(left, 0), max(top, 0)
        width = min(width, self.display.width - left)
        height = min(height, self.display.height - top)
        shot = self._grabber.grab({"left": left, "top": top, "width": width, "height": height})
        return Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX")

    def read_text(self, region: tuple[int, int, int, int] | None = None) -> list[TextLine]:
        """OCR lines in screen coordinates."""
        import pytesseract
        from PIL import Image, ImageOps

        left, top = (region[0], region[1]) if region else (0, 0)
        image = ImageOps.grayscale(self.grab(region))
        if self.scale != 1:
            image = image.resize((image.width * self.scale, image.height * self.scale), Image.LANCZOS)
        data = pytesseract.image_to_data(image, config="--psm 11", output_type=pytesseract.Output.DICT)
        words = []
        for index, text in enumerate(data["text"]):
            text = text.strip()
            if not text or float(data["conf"][index]) < self.min_confidence:
                continue
            box = [int(data[key][index]) // self.scale for key in ("left", "top", "width", "height")]
            words.append((text, box[0] + max(left, 0), box[1] + max(top, 0), box[2], box[3]))
        return merge_words(words)

    def close(self) -> None:
        if self._grabber is not None:
            self._grabber.close()
            self._grabber = None


def merge_words(words: list[tuple[str, int, int, int, int]]) -> list[TextLine]:
    """Join words into lines: the same row (centres within half a line's height) and gaps under two heights."""
    groups: list[list[tuple[str, int, int, int, int]]] = [[word] for word in words]

    def joinable(a: list, b: list) -> bool:
        height = max(item[4] for item in a + b)
        centre_a = sum(i[2] + i[4] / 2 for i in a) / len(a)
        centre_b = sum(i[2] + i[4] / 2 for i in b) / len(b)
        a_left, a_right = min(i[1] for i in a), max(i[1] + i[3] for i in a)
        b_left, b_right = min(i[1] for i in b), max(i[1] + i[3] for i in b)
        gap = max(b_left - a_right, a_left - b_right)
        return abs(centre_a - centre_b) <= height / 2 and gap <= 2 * height

    merged_any = True
    while merged_any:  # merge until stable: joining two groups can bring a third within reach
        merged_any = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if joinable(groups[i], groups[j]):
                    groups[i] += groups.pop(j)
                    merged_any = True
                    break
            if merged_any:
                break
    lines = []
    for group in groups:
        group.sort(key=lambda w: w[1])
        left = min(w[1] for w in group)
        top = min(w[2] for w in group)
        right = max(w[1] + w[3] for w in group)
        bottom = max(w[2] + w[4] for w in group)
        lines.append(TextLine(" ".join(w[0] for w in group), left, top, right - left, bottom - top))
    return sorted(lines, key=lambda t: (t.top, t.left))
