"""VirtualDisplay: an X server of the agent's own (Xvfb), with a window manager and the apps it launches.

It picks a free display number itself (Xvfb's ``-displayfd``), guards it with
its own authority file, and starts openbox so windows have titles, focus and
geometry. Everything it starts is in its own process group and is asked to
die with this process (``PR_SET_PDEATHSIG``), so even a killed agent leaves
no X server behind. It never touches a real display: the environment it
hands to apps names its own display and authority file only. Attaching to an
existing display is possible, but only by naming it explicitly.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .base import SandboxError

_PR_SET_PDEATHSIG = 1


def _die_with_parent(signal_number: int = signal.SIGKILL) -> None:
    """In the child, before exec: be sent ``signal_number`` when the process that started us dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal_number)
    except OSError:
        pass
    os.setpgrp()


class VirtualDisplay:
    """An Xvfb display with openbox; use as a context manager, or call start() and stop()."""

    def __init__(self, width: int = 1280, height: int = 800, *, depth: int = 24, window_manager: bool = True,
                 accessibility: bool = True, display: str | None = None) -> None:
        self.width, self.height, self.depth = width, height, depth
        self.window_manager = window_manager
        self.accessibility = accessibility
        #: The session bus shared by the display's apps and whoever reads their accessibility trees.
        self.session_bus: str | None = None
        self.attached = display is not None  # an existing display the user named explicitly
        self.display = display
        self.authority: str | None = os.environ.get("XAUTHORITY") if self.attached else None
        self._folder: Path | None = None
        self._processes: list[subprocess.Popen] = []
        self.started = False

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> "VirtualDisplay":
        if self.started:
            return self
        if self.attached:
            self.started = True
            return self
        for tool in ("Xvfb", "xauth"):
            if shutil.which(tool) is None:
                raise SandboxError(f"{tool} is not installed: apt-get install xvfb xauth openbox")
        self._folder = Path(tempfile.mkdtemp(prefix="harmony-display-"))
        self.authority = str(self._folder / "Xauthority")
        Path(self.authority).touch(mode=0o600)
        cookie = secrets.token_hex(16)
        read_end, write_end = os.pipe()
        try:
            server = subprocess.Popen(
                ["Xvfb", "-displayfd", str(write_end), "-screen", "0", f"{self.width}x{self.height}x{self.depth}",
                 "-nolisten", "tcp", "-auth", self.authority, "-noreset"],
                pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        finally:
            os.close(write_end)
        self._processes.append(server)
        number = self._read_display_number(read_end, server)
        self.display = f":{number}"
        subprocess.run(["xauth", "-f", self.authority, "add", self.display, ".", cookie], check=True, capture_output=True)
        self.started = True
        if self.window_manager:
            if shutil.which("openbox") is None:
                self.stop()
                raise SandboxError("openbox is not installed: apt-get install openbox")
            self.launch(["openbox", "--sm-disable"])
            self._wait_for_window_manager()
        if self.accessibility:
            self._start_accessibility_bus()
        return self

    def _start_accessibility_bus(self) -> None:
        """One D-Bus session bus for the display's apps and the agent, with AT-SPI's bus on it.

        Without both, apps expose no accessibility tree; with them, GTK apps
        do, and Qt apps too (QT_LINUX_ACCESSIBILITY_ALWAYS_ON is set). When
        the programs are missing, the display works without a tree.
        """
        launcher = next((p for p in ("/usr/libexec/at-spi-bus-launcher", "/usr/lib/at-spi2-core/at-spi-bus-launcher")
                         if os.access(p, os.X_OK)), None)
        if shutil.which("dbus-daemon") is None or launcher is None:
            return
        bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"], env=self.env(),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, preexec_fn=_die_with_parent)
        self._processes.append(bus)
        address = bus.stdout.readline().strip() if bus.stdout else ""
        if not address:
            return
        self.session_bus = address
        # The launcher starts its own bus daemon, a grandchild that would outlive a killed agent; so it
        # runs under a shell that, told by the kernel that we died (SIGTERM), kills its whole group.
        wrapper = 'trap "trap - TERM; kill 0" TERM; "$0" --launch-immediately & wait'
        self._processes.append(subprocess.Popen(["sh", "-c", wrapper, launcher], env=self.env(), stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL, preexec_fn=lambda: _die_with_parent(signal.SIGTERM)))

    @staticmethod
    def _read_display_number(read_end: int, server: subprocess.Popen) -> int:
        deadline = time.monotonic() + 15
        data = b""
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            os.set_blocking(read_end, False)
            while time.monotonic() < deadline and not data.endswith(b"\n"):
                try:
                    chunk = pipe.read(16)
                except BlockingIOError:
                    chunk = None
                if chunk:
                    data += chunk
                elif server.poll() is not None:
                    error = server.stderr.read().decode(errors="replace").strip() if server.stderr else ""
                    raise SandboxError(f"Xvfb exited at start: {error.splitlines()[-1] if error else server.returncode}")
                else:
                    time.sleep(0.01)
        if not data.strip().isdigit():
            server.kill()
            raise SandboxError("Xvfb did not report its display number in time")
        return int(data)

    def _wait_for_window_manager(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = subprocess.run(["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"], env=self.env(), capture_output=True, text=True)
            if "window id" in probe.stdout:
                return
            time.sleep(0.05)
        raise SandboxError("the window manager (openbox) did not start")

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for programs on this display: its DISPLAY and XAUTHORITY, and nothing of a real display."""
        if not self.started or self.display is None:
            raise SandboxError("the display is not started")
        base = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "XAUTHORITY", "WAYLAND_DISPLAY")}
        base["DISPLAY"] = self.display
        if self.authority:
            base["XAUTHORITY"] = self.authority
        if self.session_bus:
            base["DBUS_SESSION_BUS_ADDRESS"] = self.session_bus
            base["QT_LINUX_ACCESSIBILITY_ALWAYS_ON"] = "1"
            base.pop("NO_AT_BRIDGE", None)
        if self._folder is not None:
            base["XDG_RUNTIME_DIR"] = str(self._folder)  # AT-SPI's bus socket lives here, not in a shared home
        return {**base, **(extra or {})}

    def launch(self, command: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None) -> subprocess.Popen:
        """Start a program on this display; it is stopped with the display."""
        try:
            process = subprocess.Popen(list(command), env=self.env(env), cwd=cwd, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        except OSError as exc:
            raise SandboxError(f"could not launch {command[0]}: {exc}") from exc
        self._processes.append(process)
        return process

    def stop(self) -> None:
        """Stop every program this display started, then the X server; remove its files."""
        for process in reversed(self._processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    process.terminate()
        for process in reversed(self._processes):
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(timeout=3)
        self._processes.clear()
        self.session_bus = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        self.started = False

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.poll() is None]

    def __enter__(self) -> "VirtualDisplay":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        if getattr(self, "_processes", None):
            self.stop()
