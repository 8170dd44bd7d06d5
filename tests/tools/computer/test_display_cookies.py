"""Each display admits only clients with its own cookie, on real Xvfb: an app on one display cannot reach
another display of the same user, while the agent's own X worker (screen grabs, input) reaches both.

Before, a per-user rule (``xhost +si:localuser``) let the agent's in-process X connections in without a
cookie, and so every other process of the user, an app on another display included.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from harmony_agent.sandboxes import SandboxError
from harmony_agent.sandboxes.display import VirtualDisplay
from harmony_agent.tools.computer import ComputerTool
from helpers.available import require
from helpers.computer_helpers import call, pointer
from helpers.processes import process_environ

SECRET = "sk-proj-4b1a-never-in-the-x-worker"
CONNECT = "import sys; from Xlib.display import Display; Display(sys.argv[1]).close()"


def connects(env: dict[str, str], display: str) -> bool:
    """Whether a process with ``env`` gets into ``display``: xdpyinfo (libX11) and python-xlib must agree."""
    xdpyinfo = subprocess.run(["xdpyinfo", "-display", display], env=env, capture_output=True, text=True)
    xlib = subprocess.run([sys.executable, "-c", CONNECT, display], env=env, capture_output=True, text=True)
    assert (xdpyinfo.returncode == 0) == (xlib.returncode == 0), (xdpyinfo.stderr, xlib.stderr)
    if xdpyinfo.returncode:
        assert "unable to open display" in xdpyinfo.stderr, xdpyinfo.stderr
    return xdpyinfo.returncode == 0


def environ(pid: int) -> dict[str, str]:
    raw = process_environ(pid).split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if item)


async def test_an_app_on_one_display_cannot_connect_to_another_while_the_tool_drives_both():
    require("desktop")
    first = ComputerTool(VirtualDisplay(640, 480, accessibility=False))
    second = ComputerTool(VirtualDisplay(800, 600, accessibility=False))
    try:
        await first.start()
        await second.start()
        a, b = first.display, second.display
        assert a.display != b.display
        apps_of_a = a.env()  # what every app launched on display A starts with
        assert connects(apps_of_a, a.display)  # its own display lets it in
        assert not connects(apps_of_a, b.display)  # the other display of the same user does not
        assert not connects(b.env(), a.display)
        # No rule admits this user without a cookie, on either display.
        for display in (a, b):
            assert not connects({k: v for k, v in display.env().items() if k != "XAUTHORITY"}, display.display)
        # The agent's own worker still reads and drives both.
        assert first.screen.grab().size == (640, 480) and second.screen.grab().size == (800, 600)
        assert not (await call(first, "click", x=100, y=110)).is_error
        assert not (await call(second, "click", x=300, y=310)).is_error
        assert pointer(a) == (100, 110) and pointer(b) == (300, 310)
        assert "Screen 800x600." in (await call(second, "observe", region="screen")).text()
    finally:
        await first.aclose()
        await second.aclose()


def test_the_x_worker_holds_only_its_displays_name_and_cookie_and_dies_with_the_display(monkeypatch):
    require("desktop")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    tool = ComputerTool(VirtualDisplay(320, 240, window_manager=False, accessibility=False))
    try:
        tool._ensure_display()
        tool.screen.x.start()
        worker = tool.screen.x._worker
        assert environ(worker.pid) == {"DISPLAY": tool.display.display, "XAUTHORITY": tool.display.authority}
        assert worker.pid in tool.display.pids
        tool.display.stop()
        worker.wait(timeout=5)  # stopped with its display
        with pytest.raises(SandboxError, match="not started"):
            tool.screen.grab()
    finally:
        tool.screen.close()
        tool.display.stop()


async def test_a_killed_x_worker_is_replaced_at_the_next_action():
    require("desktop")
    tool = ComputerTool(VirtualDisplay(320, 240, window_manager=False, accessibility=False))
    try:
        await tool.start()
        worker = tool.screen.x._worker
        worker.kill()
        worker.wait(timeout=5)
        assert not (await call(tool, "move", x=30, y=40)).is_error
        assert tool.screen.x._worker.pid != worker.pid
        assert pointer(tool.display) == (30, 40)
    finally:
        await tool.aclose()


def test_a_worker_without_the_cookie_is_refused_with_a_clear_error(tmp_path):
    require("desktop")
    display = VirtualDisplay(320, 240, window_manager=False, accessibility=False).start()
    try:
        display.authority = str(tmp_path / "no-cookie")  # the worker is started with an authority file that is wrong
        tool = ComputerTool(display)
        with pytest.raises(SandboxError, match="could not connect to display"):
            tool.screen.grab()
        tool.screen.close()
    finally:
        display.stop()
