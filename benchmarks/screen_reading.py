"""How well and how fast the computer tool reads UI text off a real display, engine against engine.

Renders a corpus of UI text on a fresh Xvfb display with a Tk app
(``examples/desktop/ui_corpus.py``: names with diacritics, digits and
prices, 9-10 px fonts, bold buttons, a dark theme, a dense table), reads
each page with each OCR setting, and prints character and word accuracy
against the known text, and the time of reading the focused window (the
OCR part of ``observe``). Also times grouping OCR words into lines at 200,
400 and 800 words, against the pairwise merge it replaced.

    .venv/bin/python benchmarks/screen_reading.py [--rounds 3] [--engines tesseract,rapidocr] [--quick]

``--quick`` (one round, tesseract's default setting only, merges of 100 and 200 words) checks in CI that the script still runs.

Target: >= 99% character accuracy at <= 400 ms per observe.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harmony_agent.sandboxes.display import VirtualDisplay
from harmony_agent.tools.computer.ocr import OcrEngine, engine
from harmony_agent.tools.computer.screen import Screen, merge_words

CORPUS = Path(__file__).resolve().parent.parent / "examples" / "desktop" / "ui_corpus.py"
NO_INVERT = {"tessedit_do_invert": "0"}
PAGES = ("names", "numbers", "small", "buttons", "dark", "table")


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def score(items: list[dict], words: list[tuple[str, int, int, int, int]]) -> tuple[int, int, int, int, list[str]]:
    """(character errors, characters, words right, words, mistakes) for OCR words read against the corpus items.

    Each word (or line fragment) goes to the item whose box holds its centre; an item's text is its
    fragments left to right.
    """
    read: dict[int, list[tuple[int, str]]] = {}
    for text, left, top, width, height in words:
        cx, cy = left + width / 2, top + height / 2
        for index, item in enumerate(items):
            if (
                item["x"] - 3 <= cx <= item["x"] + item["width"] + 3
                and item["y"] - 3 <= cy <= item["y"] + item["height"] + 3
            ):
                read.setdefault(index, []).append((left, text))
                break
    errors = characters = right = total = 0
    mistakes = []
    for index, item in enumerate(items):
        got = " ".join(text for _, text in sorted(read.get(index, [])))
        expected = item["text"]
        errors += min(edit_distance(expected, got), len(expected))
        characters += len(expected)
        got_words = got.split()
        for word in expected.split():
            total += 1
            if word in got_words:
                right += 1
                got_words.remove(word)
        if got != expected:
            mistakes.append(f"{expected!r} -> {got!r}")
    return errors, characters, right, total, mistakes


def settings(names: list[str], quick: bool = False) -> list[tuple[str, OcrEngine, int, bool]]:
    """(label, engine, scale, symbol correction): the default setting is measured without and with correcting
    ×, → and Ñ from the glyphs' shapes, side by side."""
    found: list[tuple[str, OcrEngine, int, bool]] = []
    for name in names:
        if name == "tesseract":
            for language, scale, variables, persistent in [
                ("eng", 2, {}, False),
                ("eng", 2, NO_INVERT, True),
                ("Latin", 2, {}, False),
                ("Latin", 2, {}, True),
                ("Latin", 2, NO_INVERT, True),
                ("Latin", 3, NO_INVERT, True),
            ][-2 if quick else 0 : -1 if quick else None]:
                ocr = engine("tesseract", language=language, psm=11, variables=variables, persistent=persistent)
                found.append((f"{ocr.name}, x{scale}, as read", ocr, scale, False))
                if language == "Latin" and scale == 2 and variables == NO_INVERT:  # the default setting
                    found.append((f"{ocr.name}, x{scale}, ×→Ñ corrected", ocr, scale, True))
        elif name == "rapidocr":
            try:
                ocr = engine("rapidocr")
            except RuntimeError as exc:
                print(f"(skipping rapidocr: {exc})")
                continue
            for scale in (1, 2):
                found.append((f"{ocr.name}, x{scale}", ocr, scale, False))
    return found


def reading(rounds: int, engines: list[str], quick: bool = False) -> None:
    display = VirtualDisplay(1280, 800, accessibility=False).start()
    try:
        pages = []
        with tempfile.TemporaryDirectory() as folder:
            for page in PAGES:
                state = Path(folder) / f"{page}.json"
                app = display.launch(["/usr/bin/python3", str(CORPUS), page, str(state)])
                deadline = time.monotonic() + 15
                while not state.exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.2)
                screen = Screen(display)
                window = next(w for w in screen.windows() if w.focused)
                region = (window.x, window.y, window.width, window.height)
                items = json.loads(state.read_text())["items"]
                pages.append((page, region, items, screen.grab(region)))
                app.terminate()
                app.wait()
                screen.close()
        print(
            f"corpus: {sum(len(p[2]) for p in pages)} items, {sum(len(i['text']) for p in pages for i in p[2])} characters, "
            f"{len(pages)} pages"
        )
        print(f"{'setting':<60} {'chars':>7} {'words':>7} {'ms/read':>8}   worst page")
        for label, ocr, scale, symbols in settings(engines, quick):
            errors = characters = right = total = 0
            times, per_page, mistakes = [], [], []
            for page, region, items, image in pages:
                screen = _FrozenScreen(display, image, region, scale=scale, ocr=ocr, symbols=symbols)
                for _ in range(rounds):
                    started = time.perf_counter()
                    words = screen.read_words(region)
                    merge_words(words)
                    times.append(time.perf_counter() - started)
                e, c, r, t, m = score(items, words)
                errors, characters, right, total = errors + e, characters + c, right + r, total + t
                per_page.append((1 - e / c, page))
                mistakes += m
            accuracy = 1 - errors / characters
            worst = min(per_page)
            print(
                f"{label:<60} {accuracy:7.2%} {right / total:7.2%} {statistics.median(times) * 1000:8.0f}   "
                f"{worst[1]} {worst[0]:.1%}"
            )
            for mistake in mistakes[:8]:
                print(f"    {mistake}")
            ocr.close()
    finally:
        display.stop()


class _FrozenScreen(Screen):
    """A Screen whose pixels are one grab taken earlier: every setting reads exactly the same image."""

    def __init__(self, display: VirtualDisplay, image, region, **options) -> None:
        super().__init__(display, **options)
        self._image, self._region = image, region

    def grab(self, region=None):
        return self._image


def pairwise_merge(words: list[tuple[str, int, int, int, int]]) -> int:
    """The merge this project used before: join any two groups on one row until stable (cubic). Returns the line count."""
    groups = [[word] for word in words]

    def joinable(a: list, b: list) -> bool:
        height = max(item[4] for item in a + b)
        centre_a = sum(i[2] + i[4] / 2 for i in a) / len(a)
        centre_b = sum(i[2] + i[4] / 2 for i in b) / len(b)
        gap = max(
            min(i[1] for i in b) - max(i[1] + i[3] for i in a), min(i[1] for i in a) - max(i[1] + i[3] for i in b)
        )
        return abs(centre_a - centre_b) <= height / 2 and gap <= 2 * height

    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if joinable(groups[i], groups[j]):
                    groups[i] += groups.pop(j)
                    merged = True
                    break
            if merged:
                break
    return len(groups)


def synthetic_words(count: int, seed: int = 7) -> list[tuple[str, int, int, int, int]]:
    """A screenful of words: rows of 20 in two columns, with jitter, shuffled as OCR may return them."""
    rng = random.Random(seed)
    words = []
    for index in range(count):
        row, column = divmod(index, 20)
        x = column * 60 + (80 if column >= 10 else 0) + rng.randint(0, 4)
        words.append((f"w{index}", x, row * 20 + rng.randint(-2, 2), 50, 14))
    rng.shuffle(words)
    return words


def merging(sizes: tuple[int, ...]) -> None:
    print(f"{'words':>6} {'lines':>6} {'this merge':>12} {'pairwise':>12} {'ratio':>8}")
    for size in sizes:
        words = synthetic_words(size)
        started = time.perf_counter()
        lines = merge_words(words)
        ours = time.perf_counter() - started
        started = time.perf_counter()
        theirs_lines = pairwise_merge(words)
        theirs = time.perf_counter() - started
        assert len(lines) == theirs_lines, (len(lines), theirs_lines)
        print(f"{size:6d} {len(lines):6d} {ours * 1000:10.2f}ms {theirs * 1000:10.0f}ms {theirs / ours:7.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default="tesseract,rapidocr")
    parser.add_argument("--merge-sizes", default="200,400,800")
    parser.add_argument("--quick", action="store_true", help="one round, tesseract only, 100 and 200 words")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.engines, args.merge_sizes = 1, "tesseract", "100,200"
    reading(args.rounds, args.engines.split(","), args.quick)
    merging(tuple(int(size) for size in args.merge_sizes.split(",")))


if __name__ == "__main__":
    main()
