"""The computer tool on a real Xvfb display: a Tk app and xterm driven from the screen's text alone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harmony_agent import Agent, PolicyModel
from harmony_agent.sandboxes.display import VirtualDisplay
from harmony_agent.tools import ToolCall
from harmony_agent.tools.computer import ComputerTool
from helpers import ROOT
from helpers.available import require
from helpers.cli_support import run_cli

GREETER = ROOT / "examples" / "desktop" / "greeter.py"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]


@pytest.fixture
async def desktop(tmp_path):
    require("desktop")
    state = tmp_path / "greeter.json"
    tool = ComputerTool(
        VirtualDisplay(1024, 700),
        apps={"greeter": [sys.executable, str(GREETER), str(state)], "xterm": ["xterm"]},
        screenshots=tmp_path / "shots",
    )
    await tool.start()
    yield tool, state
    await tool.aclose()


async def call(tool: ComputerTool, name: str, **arguments):
    return await tool.process(ToolCall(f"functions.{name}", "commentary", json.dumps(arguments, ensure_ascii=False)))


def read_state(path: Path, key: str, expected, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        try:
            value = json.loads(path.read_text())[key]
        except (OSError, ValueError, KeyError):
            value = None
        if value == expected:
            return value
        time.sleep(0.05)
    return value


async def start_greeter(tool: ComputerTool, state: Path) -> None:
    await call(tool, "launch", app="greeter")
    for _ in range(100):
        if state.exists():
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)


async def test_a_policy_reading_only_the_screen_launches_the_app_fills_the_form_with_unicode_and_reads_the_result(
    desktop,
):
    tool, state = desktop
    from examples.desktop.greeter_policy import NAME, policy

    async with Agent(PolicyModel(policy), tools=[tool], max_steps=10) as agent:
        result = await agent.arun("Greet yourself in the Greeter app and tell me what it says.")
    assert result.stop_reason == "final", result.final_text
    # The answer is exactly what the screen says, diacritics included (OCR with tesseract's Latin model).
    assert result.final_text == f"The app now says: Hello, {NAME}!", result.final_text
    # What really happened on screen: the exact Unicode name went into the field, and the button was pressed.
    assert read_state(state, "greeting", f"Hello, {NAME}!") == f"Hello, {NAME}!"
    shots = [image for e in result.events if e.type == "tool_result" for image in e.images]
    assert len(shots) == 3  # one per action (click, type, click), none for observing
    time.sleep(0.5)
    assert all(Path(s).read_bytes()[:4] == b"\x89PNG" for s in shots)


async def test_observe_lists_windows_with_absolute_geometry_and_text_with_click_points(desktop):
    tool, state = desktop
    await start_greeter(tool, state)
    seen = (await call(tool, "observe")).text()
    assert seen.startswith("Screen 1024x700.")
    assert '"Greeter" at (' in seen and "[focused]" in seen
    assert '"Say hello" at (' in seen and '"Row 1" at (' in seen
    everything = (await call(tool, "observe", region="screen")).text()
    assert "whole screen" in everything and "Say hello" in everything


async def test_hotkeys_scrolling_and_keys_in_xterm(desktop, tmp_path):
    tool, state = desktop
    await start_greeter(tool, state)
    await call(tool, "click", text="type your name")
    await call(tool, "type_text", text="abc")
    assert read_state(state, "field", "abc") == "abc"
    reset = await call(tool, "key", keys="ctrl+r")
    assert reset.text() == "pressed ctrl+r" and read_state(state, "resets", 1) == 1
    assert read_state(state, "field", "") == ""
    row = (await call(tool, "observe")).text()
    x, y = (int(v) for v in row.split('"Row 3" at (')[1].split(")")[0].split(", "))
    await call(tool, "scroll", direction="down", amount=5, x=x, y=y)
    assert read_state(state, "top_row", 26) > 1
    marker = tmp_path / "from-xterm.txt"
    await call(tool, "launch", app="xterm")
    await asyncio.sleep(1.5)
    await call(tool, "type_text", text=f"echo typed-in-xterm > {marker}")
    await call(tool, "key", keys="return")
    for _ in range(50):
        if marker.exists():
            break
        await asyncio.sleep(0.1)
    assert marker.read_text().strip() == "typed-in-xterm"


async def test_actions_outside_the_screen_and_bad_requests_are_refused(desktop):
    tool, _state = desktop
    for name, arguments in [
        ("click", {"x": 1024, "y": 10}),
        ("move", {"x": -1, "y": 5}),
        ("double_click", {"x": 5, "y": 700}),
        ("drag", {"from_x": 10, "from_y": 10, "to_x": 5000, "to_y": 10}),
        ("scroll", {"x": 2000, "y": 10}),
    ]:
        refused = await call(tool, name, **arguments)
        assert refused.is_error and "outside the screen" in refused.text(), name
    assert "give either x and y" in (await call(tool, "click")).text()
    assert "unknown key 'hyperdrive'" in (await call(tool, "key", keys="ctrl+hyperdrive")).text()
    assert "not an allowed application" in (await call(tool, "launch", app="rm")).text()
    assert "no text 'Launch missiles'" in (await call(tool, "click", text="Launch missiles")).text()
    assert "between 0 and 10" in (await call(tool, "wait", seconds=60)).text()


def test_the_display_is_its_own_and_is_cleaned_up_after_close(monkeypatch):
    require("desktop")
    monkeypatch.setenv("DISPLAY", ":4242")  # a "real" display that must never be used
    display = VirtualDisplay(640, 480).start()
    try:
        assert display.display != ":4242" and display.env()["DISPLAY"] == display.display
        assert display.env()["XAUTHORITY"].startswith(str(Path(display.authority).parent))
        probe = subprocess.run(["xdpyinfo"], env=display.env(), capture_output=True, text=True)
        assert "640x480" in probe.stdout
        pids = display.pids
        assert len(pids) >= 2  # Xvfb and openbox
    finally:
        display.stop()
    time.sleep(0.3)
    assert not any(alive(pid) for pid in pids)
    assert not Path(display.authority).exists()


def display_leftovers(_folder: Path) -> list[str]:
    """Processes whose command line names a harmony display folder or AT-SPI's bus, still running."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and alive(int(entry.name)):
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "harmony-display-" in command or "at-spi2/accessibility.conf" in command:
                found.append(command)
    return found


def test_the_display_dies_with_a_killed_agent(tmp_path):
    require("desktop")
    script = tmp_path / "owner.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from sandboxes.display import VirtualDisplay\n"
        "d = VirtualDisplay().start()\n"
        "d.launch(['xterm'])\n"
        "from harmony_agent.tools.computer.xclient import DisplayClient\n"
        "DisplayClient(d).start()\n"  # the agent's X worker: it ends when its stdin closes
        "print(' '.join(map(str, d.pids)), flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) >= 4 and all(alive(pid) for pid in pids)  # Xvfb, openbox, xterm, the X worker (and the bus)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (any(alive(pid) for pid in pids) or display_leftovers(script.parent)):
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids)
    assert not display_leftovers(script.parent)  # grandchildren too, such as AT-SPI's own bus daemon


def test_the_cli_drives_the_desktop_with_an_allowed_app(tmp_path):
    require("desktop")
    state = tmp_path / "state.json"
    transcript = tmp_path / "desk.jsonl"
    proc = run_cli(
        [
            "run",
            "Greet someone in the Greeter app",
            "--tools",
            "computer",
            "--model",
            "policy:examples.desktop.greeter_policy:policy",
            "--app",
            f"greeter={sys.executable} {GREETER} {state}",
            "--yes",
            "--transcript",
            str(transcript),
            "--max-steps",
            "12",
        ],
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "The app now says: Hello" in proc.stdout and "computer tool: display" in proc.stderr
    assert json.loads(state.read_text())["greeting"] == "Hello, Zoë Ørsted!"
    assert len(list(transcript.with_suffix(".screenshots").glob("*.png"))) == 3
    bad = run_cli(
        [
            "run",
            "x",
            "--tools",
            "computer",
            "--app",
            "nocommand",
            "--model",
            "policy:examples.desktop.greeter_policy:policy",
        ],
        cwd=ROOT,
        timeout=60,
    )
    assert bad.returncode == 2 and "--app takes NAME=COMMAND" in bad.stderr


async def test_a_gtk_apps_accessibility_tree_gives_exact_names_states_and_click_points(tmp_path):
    require("desktop")
    gtk_app = ROOT / "examples" / "desktop" / "gtk_greeter.py"
    tool = ComputerTool(VirtualDisplay(1024, 700), apps={"gtk": ["/usr/bin/python3", str(gtk_app)]})
    try:
        await tool.start()
        assert tool.display.session_bus  # the display runs a session bus with AT-SPI on it
        await call(tool, "launch", app="gtk")
        seen = ""
        for _ in range(50):
            seen = (await call(tool, "observe")).text()
            if 'push button "Greet"' in seen:
                break
            await asyncio.sleep(0.2)
        assert 'Accessibility tree of the focused window "GTK Greeter"' in seen
        assert 'push button "Greet" at (' in seen and 'check box "Loudly" [ ] at (' in seen
        field = [line for line in seen.splitlines() if line.strip().startswith("- text")][0]
        x, y = (int(v) for v in field.split("at (")[1].rstrip(")").split(", "))
        await call(tool, "click", x=x, y=y)
        await call(tool, "type_text", text="Åse")
        await call(tool, "click", text="Loudly")
        await call(tool, "click", text="Greet")
        after = (await call(tool, "observe")).text()
        assert 'text = "Åse"' in after and 'check box "Loudly" [x]' in after
        assert 'label "HELLO, ÅSE!"' in after  # exact, where OCR would read "Ase"
    finally:
        await tool.aclose()
