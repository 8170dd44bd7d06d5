"""A small Tk app for desktop-control demos and tests: a name field, a button, a list to scroll, a hotkey.

    python examples/desktop/greeter.py [STATE_FILE]   (or python -m harmony_agent.runs.demo_kit.greeter)

Every change is written to STATE_FILE as JSON (what the field holds, the
greeting shown, the list's first visible row, how often Ctrl+R reset the
form), so a test can check what really happened on screen.
"""

from __future__ import annotations

import json
import sys
import tkinter as tk

PROMPT = "type your name here"


def main() -> None:
    state_file = sys.argv[1] if len(sys.argv) > 1 else None
    root = tk.Tk()
    root.title("Greeter")
    root.geometry("560x460+60+60")
    font = ("DejaVu Sans", 16)
    resets = {"count": 0}

    tk.Label(root, text="Your name:", font=font).pack(pady=(16, 4))
    entry = tk.Entry(root, font=font, width=24)
    entry.insert(0, PROMPT)
    entry.pack()
    greeting = tk.StringVar(value="Nobody greeted yet")

    items = tk.Listbox(root, font=font, height=5)
    for number in range(1, 61):
        items.insert("end", f"Row {number}")

    def save(*_args: object) -> None:
        if state_file:
            with open(state_file, "w", encoding="utf-8") as file:
                json.dump(
                    {
                        "field": entry.get(),
                        "greeting": greeting.get(),
                        "top_row": int(items.nearest(0)) + 1,
                        "resets": resets["count"],
                    },
                    file,
                    ensure_ascii=False,
                )

    def greet() -> None:
        greeting.set(f"Hello, {entry.get()}!")
        save()

    def reset(_event: object = None) -> None:
        entry.delete(0, "end")
        greeting.set("Nobody greeted yet")
        resets["count"] += 1
        save()

    def clear_prompt(_event: object) -> None:
        if entry.get() == PROMPT:
            entry.delete(0, "end")

    entry.bind("<FocusIn>", clear_prompt)
    entry.bind("<KeyRelease>", save)
    tk.Button(root, text="Say hello", font=font, command=greet).pack(pady=10)
    tk.Label(root, textvariable=greeting, font=font).pack()
    items.pack(pady=10)
    items.bind("<MouseWheel>", lambda e: root.after(50, save))
    items.bind("<Button-4>", lambda e: root.after(50, save))
    items.bind("<Button-5>", lambda e: root.after(50, save))
    root.bind_all("<Control-r>", reset)
    root.after(100, save)
    root.mainloop()


if __name__ == "__main__":
    main()
