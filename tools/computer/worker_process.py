"""Ending a worker process of the computer tool (the X worker, the OCR worker) the one way both need.

The workers are plain scripts run with ``python -I`` (no project import, so they start in a tenth of
a second), and each ends by itself when its stdin closes; that is also how they die with a killed
agent. Closing the pipes is therefore the request to stop, and a kill is only the fallback.
"""

from __future__ import annotations

import subprocess


def stop_worker(worker: subprocess.Popen | None, grace_s: float = 2.0) -> None:
    """Close ``worker``'s pipes, give it ``grace_s`` to end by itself, then kill it; always reaped."""
    if worker is None:
        return
    for stream in (worker.stdin, worker.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass
    try:
        worker.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
