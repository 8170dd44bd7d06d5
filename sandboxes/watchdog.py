"""A watchdog that releases this process's sandboxes when the process ends, however it ends.

Exit handlers run only when Python exits normally: a SIGTERM with no handler
(a plain script, a batch stopped by a scheduler), a SIGKILL or a crash skip
them, and a container would keep running until the next start reaps it.
Installing signal handlers from a library would change the process for its
user, so instead the first sandbox started starts one small helper process,
in a session of its own (a Ctrl-C at the terminal does not reach it). This
process tells it, over a pipe, what it holds (containers; folders) and what it
released. When the pipe closes (this process ended, for any reason), the
helper removes whatever is still listed, then exits. Normal closes have
already released everything, so then it has nothing to do.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from typing import IO

#: The helper, standard library and the docker SDK only. Lines on stdin: "+KIND VALUE" or "-KIND VALUE".
HELPER = r"""
import os, shutil, sys, ctypes
held = {}
for line in sys.stdin:
    sign, (kind, _, value) = line[:1], line[1:].rstrip("\n").partition(" ")
    if sign == "+":
        held[(kind, value)] = True
    elif sign == "-":
        held.pop((kind, value), None)
containers = [value for kind, value in held if kind == "container"]
if containers:
    try:
        import docker
        client = docker.from_env(timeout=30)
        for container in containers:
            try:
                client.api.remove_container(container, force=True)
            except Exception:
                pass
    except Exception:
        pass
for kind, value in held:
    if kind == "mount":
        try:
            ctypes.CDLL(None, use_errno=True).umount2(os.fsencode(value), 2)
        except Exception:
            pass
    if kind in ("mount", "folder"):
        shutil.rmtree(value, ignore_errors=True)
"""

_guard = threading.Lock()
_pipe: IO[str] | None = None
_pid: int | None = None  # the process that started the helper (a fork has none of its own)


def _helper() -> IO[str] | None:
    global _pipe, _pid
    if _pipe is not None and _pid == os.getpid():
        return _pipe
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-c", HELPER],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
            env={key: value for key, value in os.environ.items() if key.startswith("DOCKER_") or key == "PATH"},
        )
    except OSError:
        return None  # no helper: the exit handlers and the next start's reaping remain
    _pipe, _pid = process.stdin, os.getpid()
    return _pipe


def _tell(line: str) -> None:
    with _guard:
        pipe = _helper()
        if pipe is None:
            return
        with contextlib.suppress(OSError, ValueError):
            pipe.write(line + "\n")
            pipe.flush()


def hold(kind: str, value: str) -> None:
    """Have the helper release ``value`` (a ``container`` id, a ``mount`` or a ``folder`` path) if we die first."""
    _tell(f"+{kind} {value}")


def released(kind: str, value: str) -> None:
    """``value`` was released normally: the helper forgets it."""
    if _pipe is not None and _pid == os.getpid():
        _tell(f"-{kind} {value}")
