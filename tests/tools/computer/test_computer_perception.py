"""Perception on a real Xvfb display: what the screen says, read exactly; what has no text, found and clickable;
OCR lines grouped in O(n log n); the long-lived tesseract worker replaced when it dies."""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
import time
from pathlib import Path

import pytest
from openai_harmony import Message, Role
from typer.testing import CliRunner

from harmony_agent import Agent, PolicyModel
from harmony_agent.cli.app import app
from harmony_agent.cli.options import RunOptions, load_tools
from harmony_agent.sandboxes.display import VirtualDisplay
from harmony_agent.toolbox import ToolOptions, ToolSpecError, build_tools
from harmony_agent.tools.computer import ComputerTool
from harmony_agent.tools.computer.screen import merge_words
from helpers import ROOT
from helpers.available import require
from helpers.computer_helpers import call, observe_until

DESKTOP = ROOT / "examples" / "desktop"


def wait_for_file(path: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.exists()


# -- grouping words into lines ---------------------------------------------------------------------


def test_words_are_grouped_into_lines_by_row_and_gap_whatever_their_order():
    words = [
        ("Save", 300, 10, 40, 14),
        ("File", 10, 11, 30, 14),
        ("Edit", 48, 9, 30, 14),
        ("as", 346, 10, 16, 14),
        ("Row", 10, 40, 30, 14),
        ("two", 46, 41, 28, 14),
    ]
    for seed in range(5):
        random.Random(seed).shuffle(words)
        lines = merge_words(words)
        assert [line.text for line in lines] == ["File Edit", "Save as", "Row two"]
    file_edit = merge_words(words)[0]
    assert (file_edit.left, file_edit.top, file_edit.width, file_edit.height) == (10, 9, 68, 16)
    assert merge_words([]) == []


def test_a_full_screen_of_words_is_grouped_correctly():
    rng = random.Random(3)
    words = []
    for index in range(800):  # 40 rows, two columns of 10 words each, jittered, shuffled
        row, column = divmod(index, 20)
        x = column * 60 + (80 if column >= 10 else 0) + rng.randint(0, 4)
        words.append((f"r{row}c{column}", x, row * 20 + rng.randint(-2, 2), 50, 14))
    rng.shuffle(words)
    lines = merge_words(words)
    assert len(lines) == 80
    assert all(
        line.text.split()
        == [f"r{line.text.split()[0][1:].split('c')[0]}c{c}" for c in (range(10) if line.left < 600 else range(10, 20))]
        for line in lines
    )


# -- reading what is on screen ----------------------------------------------------------------------


async def test_observe_reads_names_with_diacritics_exactly(tmp_path):
    require("desktop")
    state = tmp_path / "names.json"
    tool = ComputerTool(
        VirtualDisplay(1024, 700, accessibility=False),
        apps={"corpus": [sys.executable, str(DESKTOP / "ui_corpus.py"), "names", str(state)]},
    )
    try:
        await tool.start()
        await call(tool, "launch", app="corpus")
        assert wait_for_file(state)
        seen = await observe_until(tool, "Zoë")
    finally:
        await tool.aclose()
    read = re.findall(r'^- "(.*)" at \(', seen, flags=re.M)
    expected = [item["text"] for item in json.loads(state.read_text())["items"]]
    found = [text for text in expected if any(text in line for line in read)]
    # The demo's name and most others exactly, where tesseract's English model read "Zoé Orsted".
    assert "Zoë Ørsted" in found and "Hello, Zoë Ørsted!" in found and "Łódź" in found, read
    assert len(found) >= len(expected) - 2, (sorted(set(expected) - set(found)), read)


async def test_a_killed_tesseract_worker_is_replaced(tmp_path):
    require("desktop")
    tool = ComputerTool(
        VirtualDisplay(640, 480, accessibility=False), apps={"form": [sys.executable, str(DESKTOP / "blank_form.py")]}
    )
    try:
        await tool.start()
        await call(tool, "launch", app="form")
        assert "Submit" in await observe_until(tool, "Submit")
        worker = tool.screen.ocr._worker  # type: ignore[attr-defined]
        assert worker is not None and worker.poll() is None
        worker.kill()
        worker.wait()
        assert "Submit" in (await call(tool, "observe")).text()
        assert tool.screen.ocr._worker.pid != worker.pid  # type: ignore[attr-defined]
    finally:
        await tool.aclose()
    assert tool.screen.ocr._worker is None  # type: ignore[attr-defined]  # closed with the tool


# -- what has no text ---------------------------------------------------------------------------------


def blank_form_policy(messages: list[Message]) -> str:
    """A stand-in model that reads only observe: it finds the field without text, fills it and submits."""
    done = [m.author.name for m in messages if m.author.role == Role.TOOL]
    last = messages[-1].content[0].text if done else ""

    def call_(name: str, arguments: dict) -> str:
        return (
            f"<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>"
            f"{json.dumps(arguments, ensure_ascii=False)}<|call|>"
        )

    if not done:
        return call_("launch", {"app": "form"})
    step = done[-1]
    if step == "functions.launch":
        return call_("wait", {"seconds": 1.5})
    if step == "functions.wait":
        return call_("observe", {})
    if step == "functions.observe":
        field = re.search(r"- field \d+x\d+ \(no text\) at \((\d+), (\d+)\)", last)
        if not field and done.count("functions.wait") < 10:  # the app is still starting: look again
            return call_("wait", {"seconds": 1})
        if not field:
            return "<|channel|>final<|message|>I see no empty field.<|return|>"
        return call_("click", {"x": int(field.group(1)), "y": int(field.group(2))})
    if step == "functions.click" and "functions.type_text" not in done:
        return call_("type_text", {"text": "Łódź"})
    if step == "functions.type_text":
        return call_("click", {"text": "Submit"})
    return "<|channel|>final<|message|>Submitted.<|return|>"


async def test_a_model_finds_and_fills_an_empty_field_from_observe_alone(tmp_path):
    require("desktop")
    state = tmp_path / "form.json"
    tool = ComputerTool(
        VirtualDisplay(800, 600), apps={"form": [sys.executable, str(DESKTOP / "blank_form.py"), str(state)]}
    )
    async with Agent(PolicyModel(blank_form_policy), tools=[tool], max_steps=30) as agent:
        result = await agent.arun("Type Łódź into the form's field and submit it.")
    assert result.final_text == "Submitted.", result.final_text
    assert wait_for_file(state, 5) and json.loads(state.read_text()) == {"submitted": "Łódź"}


async def test_an_empty_gtk_entry_and_check_box_are_found_in_the_pixels_without_an_accessibility_tree():
    require("desktop")
    tool = ComputerTool(
        VirtualDisplay(1024, 700, accessibility=False),
        apps={"gtk": ["/usr/bin/python3", str(DESKTOP / "gtk_greeter.py")]},
    )
    try:
        await tool.start()
        await call(tool, "launch", app="gtk")
        seen = await observe_until(tool, "Greet")
        assert "Accessibility tree" not in seen  # one X window, no tree: only the pixels can tell
        field = re.search(r"- field \d+x\d+ \(no text\) at \((\d+), (\d+)\)", seen)
        box = re.search(r"- check box or icon \d+x\d+ \(no text\) at \((\d+), (\d+)\)", seen)
        assert field and box, seen
        await call(tool, "click", x=int(field.group(1)), y=int(field.group(2)))
        await call(tool, "type_text", text="Ana")
        await call(tool, "click", x=int(box.group(1)), y=int(box.group(2)))  # "Loudly"
        await call(tool, "click", text="Greet")
        after = await observe_until(tool, "HELLO")
        assert "HELLO, ANA!" in after, after  # typed into the field, and the box was the check box
    finally:
        await tool.aclose()


async def test_observe_with_changes_reports_only_what_changed():
    require("desktop")
    tool = ComputerTool(VirtualDisplay(800, 600), apps={"form": [sys.executable, str(DESKTOP / "blank_form.py")]})
    try:
        await tool.start()
        await call(tool, "launch", app="form")
        full = await observe_until(tool, "Submit")
        assert "Submit" in full, full
        again = (await call(tool, "observe", changes=True)).text()
        assert again == "Screen 800x600. Nothing changed since the last observation.", again
        field = re.search(r"- field \d+x\d+ \(no text\) at \((\d+), (\d+)\)", full)
        assert field, full
        await call(tool, "click", x=int(field.group(1)), y=int(field.group(2)))
        await call(tool, "type_text", text="Oslo")
        changed = ""
        for _ in range(20):  # until the app has redrawn (slow on a loaded machine)
            changed = (await call(tool, "observe", changes=True)).text()
            if "Oslo" in changed:
                break
            await asyncio.sleep(0.2)
        lines = changed.splitlines()
        assert lines[0] == "Screen 800x600. Changes since the last observation:"
        assert any(line.startswith('+ - "Oslo" at (') for line in lines), changed
        assert any(line.startswith("- - field ") for line in lines), changed  # the empty field is empty no more
        assert not any("Submit" in line for line in lines)  # unchanged lines are not repeated
    finally:
        await tool.aclose()


def test_a_large_accessibility_tree_reads_the_same_batched_as_node_by_node():
    require("desktop")
    from harmony_agent.tools.computer.accessibility import AccessibilityReader

    display = VirtualDisplay(1280, 800).start()
    try:
        display.launch(["/usr/bin/python3", str(DESKTOP / "gtk_grid.py"), "12", "10"])
        reader = AccessibilityReader(display.session_bus)
        batched: list = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(batched) < 121:
            batched = reader.read("GTK Grid")
            time.sleep(0.2)
        walked = reader.read("GTK Grid", batched=False)
        reader.close()
    finally:
        display.stop()
    assert len(batched) == 121  # the frame and its 120 buttons and check boxes
    assert [n.describe() for n in batched] == [n.describe() for n in walked]
    assert {n.role for n in batched} == {"frame", "push button", "check box"}


# -- the display's sandbox from the command line -------------------------------------------------------


def test_the_desktop_sandbox_flag_reaches_the_display_and_a_wrong_one_is_refused():
    (tool,) = build_tools(["computer"], ToolOptions(desktop_sandbox="bubblewrap"))
    assert tool.display.sandbox == "bubblewrap" and tool.fresh().display.sandbox == "bubblewrap"
    assert build_tools(["computer"], ToolOptions())[0].display.sandbox == "none"
    with pytest.raises(ToolSpecError, match="--desktop-sandbox: unknown display sandbox 'chroot'"):
        build_tools(["computer"], ToolOptions(desktop_sandbox="chroot"))
    runner = CliRunner()
    assert "--desktop-sandbox" in runner.invoke(app, ["run", "--help"], terminal_width=200).output
    wrong = runner.invoke(app, ["run", "hello", "-t", "computer", "--desktop-sandbox", "chroot", "--yes"])
    assert wrong.exit_code != 0 and "desktop_sandbox" in wrong.output, wrong.output
    (tool,) = load_tools(["computer"], RunOptions(desktop_sandbox="docker"))
    assert tool.display.sandbox == "docker"


# -- symbols tesseract's models cannot write -------------------------------------------------------------

SYMBOLS_APP = """
import sys, tkinter as tk
root = tk.Tk(); root.title("Symbols"); root.configure(background="#ffffff")
texts = ["3 × 4 = 12", "Ñandú", "1920x1080", "Nando", "a > b", "Total 2 x 3 boxes"]
for row, text in enumerate(texts):
    tk.Label(root, text=text, font=("DejaVu Sans", 11), background="#ffffff", foreground="#111111").grid(
        row=row, column=0, sticky="w", padx=10, pady=2)
tk.Button(root, text="Next →", font=("DejaVu Sans", 10, "bold")).grid(row=len(texts), column=0, padx=12, pady=8)
root.after(300, lambda: open(sys.argv[1], "w").close())
root.mainloop()
"""


def test_times_arrows_and_enye_are_read_from_the_glyphs_and_look_alikes_are_left_alone(tmp_path):
    """tesseract's models have no × or →, and drop Ñ's tilde: read as x, > and N until the glyphs are checked."""
    require("desktop")
    from harmony_agent.tools.computer.screen import Screen

    ready = tmp_path / "ready"
    display = VirtualDisplay(800, 500, accessibility=False).start()
    try:
        app = display.launch([sys.executable, "-c", SYMBOLS_APP, str(ready)])
        assert wait_for_file(ready)
        time.sleep(0.3)
        screen, plain = Screen(display), Screen(display, symbols=False)
        window = next(w for w in screen.windows() if w.focused)
        region = (window.x, window.y, window.width, window.height)
        corrected = [line.text for line in screen.read_text(region)]
        as_read = [line.text for line in plain.read_text(region)]
        app.terminate()
        screen.close()
        plain.close()
    finally:
        display.stop()
    for text in ("3 × 4 = 12", "Next →"):
        assert text in corrected, corrected
        assert text not in as_read, as_read  # what the correction is for
    assert "Ñandú" in corrected, corrected  # read as Nandú on the benchmark's pages (two columns)
    # a lowercase x on the baseline, an N with nothing above it and a plain > stay as they are
    assert "1920x1080" in corrected and "Nando" in corrected and "Total 2 x 3 boxes" in corrected, corrected
    assert not any("→" in line for line in corrected if line.startswith("a")), corrected
