"""The desktop's default mode keeps the agent's secrets out of every process on the display.

An app on the display runs as the agent's user, so it can read the
``/proc/PID/environ`` of every program there: Xvfb, the window manager, the
session bus, the OCR worker, and itself. A secret set in the agent's
environment must be in none of them.
"""

from __future__ import annotations

import time
from pathlib import Path

from harmony_agent.sandboxes.display import VirtualDisplay
from harmony_agent.tools.computer.ocr import Tesseract
from helpers.available import require
from helpers.processes import process_environ

SECRET = "sk-proj-7d2e-never-in-a-display-process"


def environ(pid: int) -> bytes:
    return process_environ(pid)


def test_xvfb_its_helpers_and_a_launched_app_hold_no_secret_of_the_agent(monkeypatch):
    require("desktop")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    display = VirtualDisplay(320, 240)
    display.start()
    try:
        app = display.launch(["sleep", "60"])
        time.sleep(0.3)
        pids = display.pids
        assert app.pid in pids and len(pids) >= 3  # Xvfb, openbox, the bus..., the app
        seen = {pid: environ(pid) for pid in pids}
        assert b"DISPLAY=" + display.display.encode() in seen[app.pid]
        leaking = [pid for pid, text in seen.items() if SECRET.encode() in text]
        assert leaking == [], [Path(f"/proc/{pid}/cmdline").read_bytes()[:60] for pid in leaking]
    finally:
        display.stop()


def test_the_ocr_worker_holds_no_secret_of_the_agent(monkeypatch):
    require("desktop")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    reader = Tesseract()
    worker = reader._start_worker()
    try:
        assert SECRET.encode() not in environ(worker.pid)
        assert b"OMP_THREAD_LIMIT=1" in environ(worker.pid)
    finally:
        reader.close()
