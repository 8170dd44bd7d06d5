"""Real third-party apps from Debian, driven by policies that read only ``observe``; checks read the app's real state.

galculator (GTK, accessibility tree), mousepad (GTK text editor: the saved file's bytes) and xcalc (Athena, OCR only:
its display's value is read back through the PRIMARY selection, which xcalc fills when its display is clicked).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from examples.desktop import app_policies
from harmony_agent import Agent, PolicyModel
from harmony_agent.sandboxes.display import VirtualDisplay
from harmony_agent.tools.computer import ComputerTool
from harmony_agent.tools.computer.accessibility import AccessibilityReader
from helpers.available import require


def need(program: str) -> None:
    require("desktop")
    if shutil.which(program) is None:
        pytest.fail(f"{program} is not installed (scripts/setup.sh installs it)")


#: Asks for the PRIMARY selection as STRING and prints it (or nothing); run on the display with its cookie.
SELECTION = """
import sys, time
from Xlib import X, Xatom
from Xlib.display import Display

connection = Display()
window = connection.screen().root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
target = connection.intern_atom("HARMONY_AGENT_SELECTION")
window.convert_selection(Xatom.PRIMARY, Xatom.STRING, target, X.CurrentTime)
connection.flush()
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    if not connection.pending_events():
        time.sleep(0.02)
        continue
    event = connection.next_event()
    if event.type == X.SelectionNotify:
        reply = window.get_full_property(target, X.AnyPropertyType) if event.property != X.NONE else None
        sys.stdout.write(reply.value.decode("latin-1") if reply else "")
        break
"""


def primary_selection(display: VirtualDisplay, timeout: float = 3.0) -> str | None:
    """The PRIMARY selection's text on a display, asked for by a client of our own holding the display's cookie
    (the display admits no other)."""
    asked = subprocess.run(
        [sys.executable, "-c", SELECTION, str(timeout)],
        env=display.env(),
        capture_output=True,
        text=True,
        timeout=timeout + 10,
    )
    assert asked.returncode == 0, asked.stderr
    return asked.stdout or None


async def test_galculator_computes_an_expression_clicked_by_button_names(tmp_path):
    need("galculator")
    tool = ComputerTool(VirtualDisplay(1024, 700), apps={"calculator": ["galculator"]})
    async with Agent(PolicyModel(app_policies.calculator), tools=[tool], max_steps=40) as agent:
        result = await agent.arun("Compute 12*(3+4) in the calculator and tell me the result.")
        assert result.final_text == "12*(3+4) = 84", result.final_text
        # The app's own state, read afresh from its accessibility tree: the display holds 84.
        reader = AccessibilityReader(tool.display.session_bus)
        try:
            shown = [node.text for node in reader.read("galculator") if node.role == "text"]
        finally:
            reader.close()
        assert shown and shown[0].strip() == "84", shown


async def test_mousepad_saves_unicode_text_typed_into_it(tmp_path):
    need("mousepad")
    note = tmp_path / "note.txt"
    tool = ComputerTool(VirtualDisplay(1024, 700), apps={"editor": ["mousepad", str(note)]})
    async with Agent(PolicyModel(app_policies.editor), tools=[tool], max_steps=40) as agent:
        result = await agent.arun("Write the note and save it.")
    assert result.final_text.startswith("Saved: "), result.final_text
    assert note.read_bytes() in (app_policies.TEXT.encode(), app_policies.TEXT.encode() + b"\n"), note.read_bytes()


async def test_xcalc_multiplies_with_buttons_found_by_ocr_alone(tmp_path):
    need("xcalc")
    tool = ComputerTool(VirtualDisplay(1024, 700, accessibility=False), apps={"xcalc": ["xcalc"]})
    async with Agent(PolicyModel(app_policies.xcalc), tools=[tool], max_steps=40) as agent:
        result = await agent.arun("Multiply 12 by 7 in xcalc.")
        assert result.final_text == "12*7 = 84", result.final_text
        assert tool.display.session_bus is None  # no accessibility bus at all: the screen's pixels only
        # xcalc's own display value: clicking the display puts it in the PRIMARY selection.
        observed = tool.screen.windows()
        calculator = next(w for w in observed if w.title == "Calculator")
        tool.click(x=calculator.x + calculator.width // 2, y=calculator.y + 16)
        assert (primary_selection(tool.display) or "").strip() == "84"
