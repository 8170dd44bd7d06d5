"""The agent's side of its X connection to one display: requests to the display's worker (``x_worker.py``).

A display admits only clients with its cookie, and the agent's environment
never holds one (see ``VirtualDisplay``), so screen grabs, XTest input and
window-tree reads go to a worker process the display starts with its own
``DISPLAY`` and ``XAUTHORITY``. Each ``ComputerTool`` owns one client, so two
tools in one process each act on their own display.

A worker found dead before a request (killed, or its display restarted) is
replaced, since nothing was sent yet; one that dies during a request is
reported as an error, because the action may or may not have happened, and
the next request starts a new one.
"""

from __future__ import annotations

import json
import select
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harmony_agent.sandboxes.base import SandboxError
from harmony_agent.sandboxes.display import VirtualDisplay
from harmony_agent.tools.computer.worker_process import stop_worker

WORKER = Path(__file__).with_name("x_worker.py")
#: How long a worker may take to connect and say so; imports and the X handshake take ~0.1 s.
START_TIMEOUT = 15.0
PIPE_SIZE = 1 << 20


def _widen(pipe: Any) -> None:
    """Let the pipe hold a megabyte (Linux; 64 KiB by default): a screen's pixels cross in a few rounds, not 60."""
    import fcntl

    try:
        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except OSError:
        pass  # over this system's limit (fs.pipe-max-size): the default works, a little slower


class DisplayClient:
    """One worker connected to one display; thread-safe, started on first use; close() when done."""

    def __init__(self, display: VirtualDisplay) -> None:
        self.display = display
        self._worker: Any = None  # subprocess.Popen, started by the display
        self._name: str | None = None  # the display the worker connected to
        self._lock = threading.Lock()

    # -- what the tool asks -------------------------------------------------------

    def pointer(self) -> tuple[int, int]:
        x, y = self.call("pointer")
        return x, y

    def move(self, x: int, y: int) -> None:
        self.call("move", x, y)

    def glide(self, x: int, y: int, seconds: float = 0.2, steps: int = 10) -> None:
        self.call("glide", x, y, seconds, steps)

    def button(self, button: str | int, down: bool) -> None:
        self.call("button", button, down)

    def click(self, button: str = "left", clicks: int = 1) -> None:
        self.call("click", button, clicks)

    def scroll(self, steps: int) -> None:
        self.call("scroll", steps)

    def chord(self, symbols: list[int]) -> None:
        self.call("chord", symbols)

    def type_text(self, text: str) -> None:
        self.call("type_text", text)

    def grab(self, left: int, top: int, width: int, height: int) -> Any:
        """A rectangle of the screen as a PIL image."""
        from PIL import Image

        with self._lock:
            size, pixels = self._request("grab", [left, top, width, height], pixels=True)
        return Image.frombytes("RGB", tuple(size), pixels, "raw", "BGRX")

    def leaves(self, window_id: int) -> tuple[tuple[int, int] | None, list[tuple[int, int, int, int]]]:
        """A window's size (None when it is gone) and its viewable leaf windows' boxes, in screen coordinates."""
        answer = self.call("leaves", window_id)
        size = tuple(answer["size"]) if answer["size"] else None
        return size, [tuple(box) for box in answer["boxes"]]

    # -- the worker -----------------------------------------------------------------

    def start(self) -> None:
        """Start the worker now (the display must be started), rather than on the first request."""
        with self._lock:
            self._running_worker()

    def call(self, op: str, *args: Any) -> Any:
        """Ask the worker to run one operation; returns its answer, or raises RuntimeError with its error."""
        with self._lock:
            return self._request(op, list(args), pixels=False)[0]

    def _request(self, op: str, args: list[Any], *, pixels: bool) -> tuple[Any, bytes]:
        worker = self._running_worker()
        request = json.dumps({"op": op, "args": args}).encode()
        try:
            worker.stdin.write(struct.pack(">I", len(request)) + request)
            worker.stdin.flush()
            reply = json.loads(self._read(worker))
            data = self._read(worker) if pixels and "ok" in reply else b""
        except (OSError, ValueError, EOFError) as exc:
            self._stop_worker()
            raise SandboxError(
                f"the X worker of display {self._name} ended during {op!r} ({exc}); "
                "the action may not have happened, and the next one starts a new worker"
            ) from None
        if "error" in reply:
            raise RuntimeError(f"{op} on display {self._name}: {reply['error']}")
        return reply["ok"], data

    @staticmethod
    def _read(worker: Any) -> bytes:
        header = worker.stdout.read(4)
        if len(header) < 4:
            raise EOFError("no answer")
        (length,) = struct.unpack(">I", header)
        data = worker.stdout.read(length)
        if len(data) < length:
            raise EOFError("a cut answer")
        return data

    def _running_worker(self) -> Any:
        """The worker, started (or replaced, when it died or the display changed) and connected."""
        name = self.display.display
        if not self.display.started or name is None:
            raise SandboxError("the display is not started")
        if self._worker is not None and self._worker.poll() is None and self._name == name:
            return self._worker
        self._stop_worker()
        started = time.monotonic()
        self._worker = self.display.start_client([sys.executable, "-I", str(WORKER), name])
        self._name = name
        _widen(self._worker.stdout)
        try:
            ready, _, _ = select.select([self._worker.stdout], [], [], START_TIMEOUT)
            if not ready:
                raise TimeoutError("no word from it")
            hello = json.loads(self._read(self._worker))
        except (OSError, ValueError, EOFError) as exc:
            self._stop_worker()
            raise SandboxError(
                f"the X worker for display {name} ended at start ({exc}, after "
                f"{time.monotonic() - started:.1f} s); are python-xlib and mss installed for {sys.executable}?"
            ) from None
        if "error" in hello:
            self._stop_worker()
            raise SandboxError(f"the X worker could not connect to display {name}: {hello['error']}")
        return self._worker

    def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        stop_worker(worker)

    def close(self) -> None:
        """End the worker, if one runs (it also ends with its display, and when this process dies)."""
        with self._lock:
            self._stop_worker()
