"""Who owns a sandbox: a tag of host, pid and process start time, so the next start can tidy after a killed run.

The start time guards against pid reuse: a live process with the owner's pid
but another start time is not the owner.
"""

from __future__ import annotations

import os
import socket


def _process_start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_tag(pid: int | None = None) -> str:
    """``host:pid:start-time`` of a process (this one by default)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_process_start_time(pid) or '?'}"


def owner_is_gone(tag: str) -> bool:
    """True when the tag names a process on this host that no longer runs; other hosts' tags are never judged."""
    host, _, rest = tag.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return process_is_gone(int(pid_text), started)


def process_is_gone(pid: int, started: str) -> bool:
    """True when no process on this host is the one with this pid and start time."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    current = _process_start_time(pid)
    return started != "?" and current is not None and current != started
