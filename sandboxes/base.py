"""The Sandbox interface, and the kernel session logic every sandbox shares.

A sandbox runs one long-lived kernel (the ``kernel`` package) and talks to it with one
JSON line per request and reply. What differs between sandboxes is only how
the kernel process is started and how everything in the sandbox is killed;
subclasses provide those two things, and this module does the rest the same
way for all of them: timeouts (interrupt, then a hard restart after a grace
period), reporting a dead kernel, upload and download, restart and close.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import itertools
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harmony_agent.sandboxes import outbox
from harmony_agent.sandboxes.channel import KernelChannel, KernelDied
from harmony_agent.sandboxes.outbox import DATA_DIR, Collected

#: One file in the data folder as the sandbox offers it: its relative name, size, mtime, and how to read it.
DataFile = tuple[str, int, float, Callable[[], bytes]]

Status = Literal["ok", "error", "timeout", "crashed"]
#: Which cell runner the kernel uses: IPython where installed ("auto"), IPython or fail ("ipython"), or the
#: standard-library runner ("standard", what "auto" falls back to).
KernelMode = Literal["auto", "ipython", "standard"]
KERNEL_MODES = ("auto", "ipython", "standard")


SESSION_UIDS = range(20_000, 60_000)  # above login users, below nobody and the ids user namespaces may not map


def session_uid() -> int:
    """A user id no running process and no account on this machine has, for one sandbox session.

    The process limit (RLIMIT_NPROC) counts per user, so sessions sharing one
    user (nobody) share one budget: a fork bomb in one would leave the others
    unable to start anything. A user of its own gives each session its own.
    """
    import pwd
    import random

    in_use = set()
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    in_use.add(entry.stat().st_uid)
    while True:
        uid = random.choice(SESSION_UIDS)
        if uid in in_use:
            continue
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid


async def blocking(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function`` on a worker thread; called here instead when the loop's executor is already shut down.

    At interpreter exit the thread pools are shut down before (or while) sessions close, and a sandbox
    must still be removed then rather than fail with "cannot schedule new futures after shutdown".
    """
    try:
        return await asyncio.to_thread(function, *args, **kwargs)
    except RuntimeError as exc:
        if "shutdown" not in str(exc):
            raise
    return function(*args, **kwargs)


class SandboxError(RuntimeError):
    """The sandbox cannot do what was asked (not installed, not startable, closed); the message says what to do."""


@dataclass(frozen=True)
class ExecutionError:
    ename: str
    evalue: str
    traceback: str = ""


@dataclass(frozen=True)
class Execution:
    """What one ``execute`` produced, as a notebook cell would show it.

    ``status`` is ``ok``, ``error`` (the code raised), ``timeout`` (stopped at
    the time limit) or ``crashed`` (the kernel died, for example killed for
    memory). ``state_lost`` says the kernel was restarted, so variables are gone
    (files in the data folder stay). ``notes`` explain anything unusual, in
    words meant for the model.
    """

    status: Status
    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    error: ExecutionError | None = None
    files: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    duration_s: float = 0.0
    files_omitted: int = 0  # files written beyond those listed in ``files``
    state_lost: bool = False
    notes: tuple[str, ...] = ()


class Sandbox(ABC):
    """An isolated, stateful Python session.

    Use it as an async context manager, or call :meth:`start` and
    :meth:`close`. Calls are serialized: a sandbox runs one thing at a time,
    as a notebook does.
    """

    #: Short name of the isolation in use: "docker", "bubblewrap" or "unsandboxed".
    kind: str = ""

    def __init__(
        self,
        *,
        timeout: float = 120.0,
        max_output: int = 20_000,
        interrupt_grace: float = 3.0,
        kernel: KernelMode = "auto",
    ) -> None:
        if kernel not in KERNEL_MODES:
            raise ValueError(f"kernel must be one of {', '.join(KERNEL_MODES)}, not {kernel!r}")
        self.kernel_mode = kernel
        #: The cell runner the kernel reported at start, e.g. "IPython 8.5.0" or "standard library".
        self.kernel_name = ""
        self.kernel_fallback_reason = ""
        self.timeout = timeout
        self.max_output = max_output
        self.interrupt_grace = interrupt_grace
        self._channel: KernelChannel | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._started = False
        self._closed = False
        self._replaced = False  # set by a subclass that had to replace the whole sandbox (files lost too)
        self._pending_notes: tuple[str, ...] = ()  # for the next execution: what happened since the last one
        self._oom_seen: int | None = None  # the memory cgroup's kill count at the last reply, where the kernel sees it
        self._loop: asyncio.AbstractEventLoop | None = None  # where start() ran: the kernel's pipes belong to it
        self._brought: dict[tuple[str, str], tuple[int, float]] = {}  # (host folder, name) -> (size, mtime) copied

    # -- what subclasses provide -------------------------------------------

    @abstractmethod
    async def _boot(self) -> None:
        """Create the sandbox itself (a container, a data folder); called once by start()."""

    @abstractmethod
    async def _spawn_kernel(self) -> KernelChannel:
        """Start a kernel inside the sandbox and return its channel."""

    @abstractmethod
    async def _kill_all(self) -> None:
        """Kill every process in the sandbox (the hard reset), even when it is out of processes."""

    @abstractmethod
    async def _shutdown(self) -> None:
        """Remove the sandbox and everything it holds; must be safe to call twice."""

    @abstractmethod
    def _read_file(self, relative: str, max_bytes: int) -> tuple[bytes, int, float]:
        """Blocking: (bytes, size, mtime) of one regular file of the data folder, read through the sandbox
        itself (never a host path the sandbox named); :class:`~outbox.Refused` for a link, a device, one too big."""

    @abstractmethod
    def _data_files(self, known: dict[str, tuple[int, float]], max_bytes: int) -> Iterator[DataFile]:
        """Blocking: every regular, visible file of the data folder, read through the sandbox itself.

        Each must be read (or skipped) before the next is asked for. ``known`` (name: size, mtime) are files the
        host has; ``max_bytes`` the cap on one file. A sandbox may leave out the first and not carry the bytes
        of files over the second, as long as it still names them with their size.
        """

    async def _death_reason(self) -> str:
        """Why the kernel died, in words for the model (subclasses know exit codes)."""
        return "the kernel process exited unexpectedly"

    @abstractmethod
    def describe(self) -> str:
        """One line saying what isolates this sandbox, for users and logs."""

    # -- the interface -----------------------------------------------------

    @property
    def kernel_environment(self) -> dict[str, str]:
        """What the kernel process needs in its environment to run the chosen cell runner."""
        return {"HARMONY_KERNEL_MODE": self.kernel_mode}

    @property
    def notebook(self) -> bool:
        """Whether cells run on IPython (shell commands, magics, display and top-level await work)."""
        return self.kernel_name.startswith("IPython")

    def describe_kernel(self) -> str:
        """One line for the model and the user on what kind of cells this session runs."""
        if not self.kernel_name:
            return "kernel not started"
        if self.notebook:
            return f"{self.kernel_name}: notebook cells (display(), !shell commands, %magics, top-level await)"
        why = f" ({self.kernel_fallback_reason})" if self.kernel_fallback_reason else ""
        return f"plain Python{why}: no !shell commands or %magics; display() prints, top-level await works"

    @property
    def started(self) -> bool:
        return self._started and not self._closed

    async def start(self) -> Sandbox:
        if self._closed:
            raise SandboxError("this sandbox was closed; create a new one")
        if not self._started:
            self._loop = asyncio.get_running_loop()
            await self._boot()
            self._started = True
            try:
                self._channel = await self._spawn_kernel()
                await self._ping()
            except BaseException:
                await self.close()
                raise
        return self

    async def _elsewhere(self, coroutine: Any) -> Any:
        """Run ``coroutine`` on the loop this sandbox started on when called from another one (a session's
        runtime using a sandbox its user started on their own loop); None when this loop is the right one.

        The kernel's pipes and reader task belong to that loop. A loop still running on another thread is
        handed the work; one that has closed (an ``asyncio.run`` that returned) took the pipes with it, so
        the call is refused with what to do instead of failing deep inside asyncio.
        """
        home = self._loop
        if home is None or home is asyncio.get_running_loop():
            return None
        if home.is_closed() or not home.is_running():
            coroutine.close()
            raise SandboxError(
                "this sandbox was started on an event loop that is no longer running (an asyncio.run that "
                "returned, say), and its kernel's pipes went with it. Give the tool an unstarted sandbox (it is "
                "started on harmony-agent's runtime, usable from any thread or loop), or start the tool with "
                "`await tool.start()` / `async with tool`"
            )
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, home))

    def _away(self) -> bool:
        """Whether the caller is on a loop other than the one this sandbox started on."""
        return self._loop is not None and self._loop is not asyncio.get_running_loop()

    async def execute(self, code: str, *, timeout: float | None = None) -> Execution:
        """Run ``code`` in the session; never raises for anything the code does."""
        if self._away():
            return await self._elsewhere(self.execute(code, timeout=timeout))
        async with self._lock:
            return self._with_pending_notes(await self._execute(code, timeout))

    async def _execute(self, code: str, timeout: float | None) -> Execution:
        """One execution under the lock; a dead kernel is restarted and the model told."""
        channel = await self._ready()
        limit = self.timeout if timeout is None else timeout
        request_id = str(next(self._ids))
        started = asyncio.get_running_loop().time()
        try:
            await channel.send({"id": request_id, "op": "execute", "code": code, "max_output": self.max_output})
            try:
                reply = await asyncio.wait_for(channel.reply(request_id), limit)
                self._oom_seen = reply.get("oom_kills")
                return self._explain_full_disk(self._execution(reply))
            except asyncio.TimeoutError:
                return await self._stop_overrun(channel, request_id, limit, started)
        except KernelDied:
            reason = await self._death_reason()
            await self._restart_kernel()
            note = self._lost(f"The Python kernel died ({reason}) and was restarted")
            return Execution(
                status="crashed",
                error=ExecutionError("KernelDied", reason),
                state_lost=True,
                notes=(note,),
                duration_s=asyncio.get_running_loop().time() - started,
            )

    async def upload(self, data: bytes | str | Path, path: str) -> str:
        """Write ``data`` (bytes, or a local file's path) to ``path``, relative to the data folder; returns the sandbox path."""
        content = Path(data).read_bytes() if isinstance(data, (str, Path)) else bytes(data)
        reply = await self._transfer({"op": "upload", "path": path, "data": base64.b64encode(content).decode()})
        return str(reply["path"])

    async def download(self, path: str) -> bytes:
        """The bytes of a file in the sandbox (relative paths are in the data folder)."""
        reply = await self._transfer({"op": "download", "path": path})
        return base64.b64decode(reply["data"])

    async def bring_home(
        self,
        dest: str | os.PathLike[str],
        names: Sequence[str] | None = None,
        *,
        max_files: int = outbox.MAX_FILES,
        max_file_bytes: int = outbox.MAX_FILE_BYTES,
        max_total_bytes: int = outbox.MAX_TOTAL_BYTES,
    ) -> Collected:
        """Copy files of the data folder into the host folder ``dest``, at the same relative names.

        ``names`` are the sandbox's names for the files (an execution's images), else every visible file
        new or changed since the last copy into ``dest``. Nothing here opens a host path the sandbox named:
        the bytes come through the sandbox (see :mod:`outbox`), within the caps; what is refused or left
        behind is said in the notes. Never raises for what the sandbox holds.
        """
        if not self.started:
            return Collected(notes=["the sandbox is not running, so no files were copied"])
        folder = Path(dest)
        caps = (max_files, max_file_bytes, max_total_bytes)
        if names is not None:
            return await asyncio.to_thread(outbox.bring_named, self, folder, list(names), caps)
        return await asyncio.to_thread(outbox.bring_all, self, folder, caps)

    async def restart(self) -> None:
        """A fresh kernel: variables are cleared, files in the data folder stay."""
        if self._away():
            return await self._elsewhere(self.restart())
        async with self._lock:
            await self._ready()
            await self._restart_kernel()

    async def close(self) -> None:
        """Stop the kernel and remove the sandbox; idempotent."""
        if self._away() and not self._closed and self._loop is not None and self._loop.is_running():
            return await self._elsewhere(self.close())
        self._closed = True
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.cancel()
        if self._started:
            await self._shutdown()

    async def __aenter__(self) -> Sandbox:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the shared logic --------------------------------------------------

    async def _ready(self) -> KernelChannel:
        if self._closed:
            raise SandboxError("this sandbox was closed; create a new one")
        if not self._started:
            await self.start()
        if self._channel is None or not self._channel.alive:
            reason = await self._death_reason() if self._channel is not None else "it was not running"
            await self._restart_kernel()
            self._pending_notes += (
                self._lost(f"The Python kernel had stopped since the last call ({reason}) and was restarted"),
            )
        assert self._channel is not None
        return self._channel

    def _lost(self, what: str) -> str:
        """A note for the model on what a restart lost: always the variables; the files too if the sandbox was replaced."""
        if self._replaced:
            self._replaced = False
            return (
                f"{what}: variables and imports are lost, and so are the files in {DATA_DIR}, because the sandbox "
                "itself had stopped and was replaced by a fresh one."
            )
        return f"{what}: variables and imports are lost; files in {DATA_DIR} are kept."

    def _as_sandbox_names(self, value: object) -> object:
        return outbox.translated(value, self.kernel_data_dir)

    def _with_pending_notes(self, execution: Execution) -> Execution:
        notes, self._pending_notes = self._pending_notes, ()
        if not notes:
            return execution
        return dataclasses.replace(execution, state_lost=True, notes=notes + execution.notes)

    async def _ping(self) -> None:
        assert self._channel is not None
        request_id = str(next(self._ids))
        await self._channel.send({"id": request_id, "op": "ping"})
        try:
            reply = await asyncio.wait_for(self._channel.reply(request_id), 30)
        except (KernelDied, asyncio.TimeoutError) as exc:
            raise SandboxError(
                f"the Python kernel did not start in the {self.kind} sandbox: {await self._death_reason()}"
            ) from exc
        self._oom_seen = reply.get("oom_kills")
        self.kernel_name = str(reply.get("kernel") or "standard library")
        self.kernel_fallback_reason = str(reply.get("fallback_reason") or "")

    async def _restart_kernel(self) -> None:
        old, self._channel = self._channel, None
        await self._kill_all()
        if old is not None:
            await old.wait_closed(5)
            old.cancel()
        self._channel = await self._spawn_kernel()
        await self._ping()

    async def _stop_overrun(self, channel: KernelChannel, request_id: str, limit: float, started: float) -> Execution:
        """Interrupt code that ran past its time; restart the kernel if the interrupt does not take."""
        await channel.send({"op": "interrupt"})
        try:
            reply = await asyncio.wait_for(channel.reply(request_id), self.interrupt_grace)
        except (asyncio.TimeoutError, KernelDied):
            await self._restart_kernel()
            note = self._lost(
                f"Execution timed out after {limit:g} s and did not stop when interrupted, so the kernel was restarted"
            )
            return Execution(
                status="timeout",
                error=ExecutionError("TimeoutError", f"execution exceeded {limit:g} s"),
                state_lost=True,
                notes=(note,),
                duration_s=asyncio.get_running_loop().time() - started,
            )
        execution = self._execution(reply)
        note = f"Execution timed out after {limit:g} s and was interrupted; the session's state is kept."
        error = ExecutionError(
            "TimeoutError", f"execution exceeded {limit:g} s", execution.error.traceback if execution.error else ""
        )
        return dataclasses.replace(execution, status="timeout", error=error, notes=execution.notes + (note,))

    async def _transfer(self, request: dict) -> dict:
        if self._away():
            return await self._elsewhere(self._transfer(request))
        async with self._lock:
            channel = await self._ready()
            request_id = str(next(self._ids))
            try:
                await channel.send({"id": request_id, **request})
                reply = await asyncio.wait_for(channel.reply(request_id), max(self.timeout, 60))
            except (KernelDied, asyncio.TimeoutError) as exc:
                await self._restart_kernel()
                raise SandboxError(f"the kernel failed during {request['op']} and was restarted") from exc
        if reply.get("status") != "ok":
            error = reply.get("error") or {}
            raise SandboxError(
                f"{request['op']} of {request.get('path')!r} failed: {error.get('ename')}: {error.get('evalue')}"
            )
        return reply

    def _explain_full_disk(self, execution: Execution) -> Execution:
        """Add a note when the code ran out of space, so the model learns it hit a limit it can free, not a fault."""
        error = execution.error
        text = f"{error.evalue}\n{error.traceback}\n" if error else ""
        if "No space left on device" not in text + execution.stderr:
            return execution
        limits = getattr(self, "limits", None)
        sizes = f" ({DATA_DIR} {limits.data_mb} MB, /tmp {limits.tmp_mb} MB)" if isinstance(limits, Limits) else ""
        note = (
            f"A folder in the sandbox is full: {DATA_DIR} and /tmp are size-limited{sizes}. Delete files that are "
            "no longer needed (os.remove) to free space; the session itself is unharmed."
        )
        return dataclasses.replace(execution, notes=execution.notes + (note,))

    #: Where the kernel itself sees the data folder: /mnt/data, except in an unsandboxed kernel (a host folder).
    kernel_data_dir: str = DATA_DIR

    def _execution(self, reply: dict) -> Execution:
        """The kernel's reply as an Execution. The reply is the sandbox's word: the names of files and images are
        kept only when they are inside the data folder (as sandbox paths, never host paths), and capped in number."""
        error = reply.get("error")
        status = reply.get("status")
        files, file_notes = outbox.sandbox_names(self._as_sandbox_names(reply.get("files")), "file", outbox.MAX_FILES)
        images, image_notes = outbox.sandbox_names(
            self._as_sandbox_names(reply.get("images")),
            "image",
            outbox.MAX_IMAGES,
            outbox.count(reply.get("images_omitted")),
        )
        omitted = outbox.count(reply.get("files_omitted"))
        return Execution(
            status="ok" if status == "ok" else "error",
            stdout=reply.get("stdout", ""),
            stderr=reply.get("stderr", ""),
            result=reply.get("result"),
            error=ExecutionError(error.get("ename", ""), error.get("evalue", ""), error.get("traceback", ""))
            if error
            else None,
            files=files,
            images=images,
            duration_s=float(reply.get("duration_s", 0.0)),
            files_omitted=omitted,
            notes=file_notes + image_notes,
        )


@dataclass
class Limits:
    """Resource limits of a sandbox session; defaults suit a laptop-sized notebook."""

    memory_mb: int = 1024
    processes: int = 256
    cpus: float = 1.0
    data_mb: int = 512  # /mnt/data in total (a tmpfs, so memory); bubblewrap bounds the total only as root
    tmp_mb: int = 256
    shm_mb: int = 64  # /dev/shm, which is memory: bounded as Docker's default is
