"""Servers the tests start as processes of their own, on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def listening(
    command: Sequence[str],
    port: int,
    *,
    name: str,
    cwd: Path,
    env: dict[str, str],
    timeout: float = 60,
    stop_timeout: float = 20,
) -> Iterator[subprocess.Popen]:
    """Start ``command``, wait until it accepts connections on ``port``, and end it (by its PID) afterwards."""
    process = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert process.poll() is None, f"{name} exited at start"
            time.sleep(0.2)
        else:
            pytest.fail(f"{name} did not listen within {timeout:g} s")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=stop_timeout)


def process_environ(pid: int, timeout: float = 5.0) -> bytes:
    """``/proc/PID/environ`` of a process just started, once it is there.

    Popen returns when the child's exec has begun, but the kernel sets up the new
    program's environment a moment later; read in between, the file is empty.
    """
    path = Path(f"/proc/{pid}/environ")
    deadline = time.monotonic() + timeout
    while True:
        data = path.read_bytes()
        if data or time.monotonic() > deadline:
            return data
        time.sleep(0.01)
