"""A Tk window showing one page of UI text whose exact content is known, to measure how well the screen is read.

    python examples/desktop/ui_corpus.py PAGE [STATE_FILE]

Pages: names (diacritics), numbers (digits, prices, dates), small (9-10 px),
buttons (bold), dark (light text on a dark theme), table (a dense grid).
Once drawn, STATE_FILE receives every text with its box in screen
coordinates, so a benchmark can compare what OCR read, item by item.
"""

from __future__ import annotations

import json
import sys
import tkinter as tk

NAMES = [
    "Zoë Ørsted",
    "Ñandú",
    "Łódź",
    "François Müller",
    "José Álvarez",
    "Søren Kierkegaard",
    "Antonín Dvořák",
    "Škoda Octavia",
    "Ærøskøbing",
    "Grüße aus Köln",
    "naïve café",
    "Kraków, Poland",
    "Hello, Zoë Ørsted!",
    "Saint-Étienne",
    "Björn Ångström",
]
NUMBERS = [
    "€1,234.56",
    "$0.99",
    "Total: 12 items",
    "2026-11-28 17:05",
    "+49 30 1234567",
    "Invoice #00042",
    "98.6%",
    "3 × 4 = 12",
    "Balance: -€87.10",
    "ZIP 75008",
    "v2.13.1",
    "1/3 done",
    "Qty 250 @ $4.75",
    "ID 7J3K-9Q2X",
]
SMALL = [
    "Remember me on this computer",
    "Forgot your password?",
    "Terms of Service",
    "Last saved 2 minutes ago",
    "Ln 14, Col 27",
    "UTF-8",
    "Zoom 110%",
    "Résumé.pdf 1.2 MB",
    "3 unread messages",
    "Sort by: Date modified",
]
BUTTONS = [
    "Save",
    "Cancel",
    "Apply Changes",
    "Sign in",
    "Next →",
    "Delete Account",
    "Upload Files",
    "OK",
    "Retry",
    "Export as CSV",
]
DARK = [
    "Settings",
    "Appearance: Dark",
    "Notifications are on",
    "Wi-Fi: Café Münster",
    "Battery 76%",
    "Do not disturb until 08:30",
    "Account: zoe.orsted@example.com",
    "Storage 41.7 GB free",
]
TABLE_HEADER = ["ID", "Name", "City", "Qty", "Price", "Status"]
TABLE = [
    ["1041", "Zoë", "Łódź", "12", "4.50", "paid"],
    ["1042", "Ñandú", "Málaga", "3", "19.99", "open"],
    ["1043", "Søren", "Aarhus", "40", "0.75", "paid"],
    ["1044", "Jürgen", "München", "7", "120.00", "late"],
    ["1045", "Renée", "Genève", "1", "999.99", "open"],
    ["1046", "Oğuz", "İzmir", "15", "8.25", "paid"],
    ["1047", "Ana", "São Paulo", "22", "13.40", "void"],
    ["1048", "Bjørn", "Tromsø", "5", "61.10", "open"],
]
PAGES = ("names", "numbers", "small", "buttons", "dark", "table")


def build(root: tk.Tk, page: str) -> list[tk.Widget]:
    """The page's widgets; each has a ``corpus_text`` attribute with exactly what it shows."""
    widgets: list[tk.Widget] = []
    background, foreground = ("#1e1e1e", "#e6e6e6") if page == "dark" else ("#ffffff", "#111111")
    root.configure(background=background)

    def label(parent, text: str, font, row: int, column: int = 0, **options) -> None:
        widget = tk.Label(
            parent, text=text, font=font, background=background, foreground=foreground, anchor="w", **options
        )
        widget.grid(row=row, column=column, sticky="w", padx=10, pady=2)
        widget.corpus_text = text  # type: ignore[attr-defined]
        widgets.append(widget)

    if page in ("names", "numbers", "dark"):
        items = {"names": NAMES, "numbers": NUMBERS, "dark": DARK}[page]
        for index, text in enumerate(items):
            label(root, text, ("DejaVu Sans", 11), index // 2, index % 2)
    elif page == "small":
        for index, text in enumerate(SMALL):
            label(root, text, ("DejaVu Sans", -9 if index % 2 else -10), index // 2, index % 2)
    elif page == "buttons":
        for index, text in enumerate(BUTTONS):
            button = tk.Button(root, text=text, font=("DejaVu Sans", 10, "bold"))
            button.grid(row=index // 3, column=index % 3, padx=12, pady=8, sticky="w")
            button.corpus_text = text  # type: ignore[attr-defined]
            widgets.append(button)
    elif page == "table":
        for column, text in enumerate(TABLE_HEADER):
            label(root, text, ("DejaVu Sans", 10, "bold"), 0, column)
        for row, cells in enumerate(TABLE, start=1):
            for column, text in enumerate(cells):
                label(root, text, ("DejaVu Sans", 10), row, column)
    else:
        raise SystemExit(f"unknown page {page!r}; pages: {', '.join(PAGES)}")
    return widgets


def main() -> None:
    page = sys.argv[1] if len(sys.argv) > 1 else "names"
    state_file = sys.argv[2] if len(sys.argv) > 2 else None
    root = tk.Tk()
    root.title(f"Corpus: {page}")
    root.geometry("+40+40")
    widgets = build(root, page)

    def report() -> None:
        root.update_idletasks()
        items = [
            {
                "text": w.corpus_text,
                "x": w.winfo_rootx(),
                "y": w.winfo_rooty(),
                "width": w.winfo_width(),
                "height": w.winfo_height(),
            }
            for w in widgets
        ]
        if state_file:
            with open(state_file + ".part", "w", encoding="utf-8") as file:
                json.dump({"page": page, "items": items}, file, ensure_ascii=False)
            import os

            os.replace(state_file + ".part", state_file)

    root.after(500, report)
    root.mainloop()


if __name__ == "__main__":
    main()
