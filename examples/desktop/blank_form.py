"""A Tk form whose input field carries no text at all: no placeholder, no label inside, only a title above.

    python examples/desktop/blank_form.py [STATE_FILE]

OCR sees "City" and "Submit" but nothing of the field; the field is its own
X window (Tk makes one per widget), which is how ``observe`` can still
report it. On Submit, STATE_FILE receives what the field holds.
"""

from __future__ import annotations

import json
import os
import sys
import tkinter as tk


def main() -> None:
    state_file = sys.argv[1] if len(sys.argv) > 1 else None
    root = tk.Tk()
    root.title("Blank form")
    root.geometry("420x220+80+80")
    tk.Label(root, text="City", font=("DejaVu Sans", 12)).pack(pady=(24, 4))
    field = tk.Entry(root, font=("DejaVu Sans", 12), width=24)
    field.pack(pady=4)

    def submit() -> None:
        if state_file:
            with open(state_file + ".part", "w", encoding="utf-8") as file:
                json.dump({"submitted": field.get()}, file, ensure_ascii=False)
            os.replace(state_file + ".part", state_file)

    tk.Button(root, text="Submit", font=("DejaVu Sans", 12), command=submit).pack(pady=16)
    root.mainloop()


if __name__ == "__main__":
    main()
