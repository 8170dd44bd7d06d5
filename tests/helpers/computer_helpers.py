"""Helpers shared by the computer tool's tests: calling its functions, waiting for a slow desktop, asking X."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

from harmony_agent.sandboxes.display import VirtualDisplay
from harmony_agent.tools import ToolCall
from harmony_agent.tools.computer import ComputerTool


async def call(tool: ComputerTool, name: str, **arguments):
    return await tool.process(ToolCall(f"functions.{name}", "commentary", json.dumps(arguments, ensure_ascii=False)))


async def observe_until(tool: ComputerTool, needle: str, timeout: float = 30.0) -> str:
    """Observe until ``needle`` shows (apps start and redraw slowly on a loaded machine)."""
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = (await call(tool, "observe")).text()
        if needle in seen:
            break
        await asyncio.sleep(0.2)
    return seen


def pointer(display: VirtualDisplay) -> tuple[int, int]:
    """Where the pointer is, asked of the display by a separate program (not through the tool's own connection)."""
    out = subprocess.run(
        ["xdotool", "getmouselocation", "--shell"], env=display.env(), capture_output=True, text=True
    ).stdout
    values = dict(line.split("=", 1) for line in out.split())
    return int(values["X"]), int(values["Y"])
