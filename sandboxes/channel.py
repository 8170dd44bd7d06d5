"""The host's end of a kernel: one JSON line per request and reply, and why a kernel ended.

Replies are read by a background task into a queue, so a caller that waits for one with a
timeout never cuts a message in half, and stale replies (to requests given up on) are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any


def describe_exit(
    code: int | None, stderr: str = "", *, memory_mb: int | None = None, oom_checked: bool = False
) -> str:
    """Why a kernel ended, from its exit status (negative: a signal; 128+n: signal n, as shells and runtimes report).

    ``memory_mb`` blames a SIGKILL on the memory limit; ``oom_checked`` says the
    sandbox's memory cgroup was asked and killed nothing, so the kill came from inside.
    """
    signal_number = (
        -code if code is not None and code < 0 else (code - 128 if code is not None and 128 < code < 160 else None)
    )
    detail = f": {stderr.strip().splitlines()[-1]}" if stderr.strip() else ""
    if signal_number is None:
        return f"the kernel exited with code {code}{detail}"
    import signal

    try:
        name = signal.Signals(signal_number).name
    except ValueError:
        name = f"signal {signal_number}"
    if name == "SIGKILL" and memory_mb is not None:
        return f"killed by SIGKILL, most likely for going over the sandbox's {memory_mb} MB memory limit"
    if name == "SIGKILL" and memory_mb is None and oom_checked:
        return "killed by SIGKILL, not for memory (the memory limit was not reached): the code or a process in the sandbox sent it"
    return f"killed by {name}{detail}"


class KernelDied(Exception):
    """The kernel's stream ended: it exited or was killed."""


class KernelChannel:
    """One running kernel: send requests, receive replies from a background reader.

    Replies are queued by a reader task, so waiting for one with a timeout never
    cuts a message in half. ``lines`` is the kernel's protocol output, one
    line at a time; it ends when the kernel does.
    """

    def __init__(self, lines: AsyncIterator[bytes], write: Any) -> None:
        self._write = write
        self._replies: asyncio.Queue[dict | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(lines))

    async def _read(self, lines: AsyncIterator[bytes]) -> None:
        try:
            async for line in lines:
                try:
                    self._replies.put_nowait(json.loads(line))
                except json.JSONDecodeError:
                    continue  # not ours (the kernel prints nothing else, but a broken one might)
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._replies.put_nowait(None)

    @property
    def alive(self) -> bool:
        return not self._reader.done()

    async def send(self, request: dict) -> None:
        try:
            await self._write((json.dumps(request) + "\n").encode())
        except (OSError, ConnectionError, RuntimeError) as exc:
            raise KernelDied(str(exc)) from exc

    async def reply(self, request_id: str) -> dict:
        """The reply to ``request_id``; stale replies (to requests given up on) are skipped."""
        while True:
            message = await self._replies.get()
            if message is None:
                self._replies.put_nowait(None)  # stay dead for later callers
                raise KernelDied()
            if message.get("id") == request_id:
                return message

    async def wait_closed(self, timeout: float) -> bool:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self._reader.done()

    def cancel(self) -> None:
        self._reader.cancel()
