"""LocalSandbox: the same kernel without Docker, isolated by bubblewrap.

The kernel runs as a user of its own (when we are root) inside fresh user, PID,
network, IPC and UTS namespaces: it sees a read-only system, a private
``/tmp``, and a per-session data folder mounted at ``/mnt/data``; the host's
home folders and network are not there. Resource limits are rlimits set just
before bubblewrap starts: address space (so an oversized allocation is a
MemoryError, not a dead kernel), processes, and file size. The data folder's
total size is bounded by a tmpfs mounted on it (``datafs``) where we are root.

Why not bubblewrap as root with ``--uid``: that stays host root with its
capabilities dropped, and root-owned files such as ``/root`` remain readable.
So when we are root we drop to an unused user id first (one per session, so
each has its own process budget) and let bubblewrap make an unprivileged user
namespace.

``isolation="unsandboxed"`` runs the kernel as a plain subprocess of this
user, with the same limits but no isolation; it exists for machines where
neither Docker nor bubblewrap works, and it warns.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import platform
import resource
import shutil
import signal
import struct
import sys
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Literal

from harmony_agent.sandboxes import datafs, outbox, watchdog
from harmony_agent.sandboxes._owner import owner_tag, process_is_gone
from harmony_agent.sandboxes.base import (
    DATA_DIR,
    DataFile,
    KernelMode,
    Limits,
    Sandbox,
    SandboxError,
    session_uid,
)
from harmony_agent.sandboxes.channel import KernelChannel, describe_exit
from harmony_agent.sandboxes.kernel import KERNEL_SOURCE

SYSTEM_PATHS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
KERNEL_ENV = {
    "HOME": "/tmp",
    "MPLBACKEND": "Agg",
    "PYTHONUNBUFFERED": "1",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "LANG": "C.UTF-8",
}
Isolation = Literal["bubblewrap", "unsandboxed"]


DATA_PREFIX = "harmony-sandbox-"


def reap_orphaned_data() -> list[Path]:
    """Remove data folders whose owning process died (a killed run cannot remove its own)."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(DATA_PREFIX + "*"):
        pid, started = (folder.name[len(DATA_PREFIX) :].split("_") + ["", ""])[:2]
        if pid.isdigit() and process_is_gone(int(pid), started):
            datafs.remove(folder)
            removed.append(folder)
    return removed


# A seccomp program (classic BPF) that makes ptrace fail with EPERM, so code in the sandbox cannot
# attach to bubblewrap's PID 1 (same user, so nothing else would stop it). Per architecture: the
# audit arch value and ptrace's syscall number; x86_64's x32 calls (bit 30) are refused too.
PTRACE_SYSCALL = {"x86_64": (0xC000003E, 101), "aarch64": (0xC00000B7, 117)}
_SECCOMP_ALLOW, _SECCOMP_EPERM = 0x7FFF0000, 0x00050000 | errno.EPERM


def no_ptrace_program() -> bytes | None:
    """The filter for this machine, or None on an architecture not listed (then ptrace stays allowed)."""
    found = PTRACE_SYSCALL.get(platform.machine())
    if found is None:
        return None
    audit_arch, ptrace = found
    load, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    program = [
        (load, 0, 0, 4),  # A = seccomp_data.arch
        (jeq, 0, 4, audit_arch),  # another architecture: allow
        (load, 0, 0, 0),  # A = seccomp_data.nr
        (jge, 1, 0, 0x40000000),  # x32 system calls: refuse
        (jeq, 0, 1, ptrace),  # ptrace: refuse, anything else: allow
        (ret, 0, 0, _SECCOMP_EPERM),
        (ret, 0, 0, _SECCOMP_ALLOW),
    ]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


def bubblewrap_path() -> str | None:
    return shutil.which("bwrap")


def _set_limits(limits: Limits) -> None:
    """Runs in the child just before exec: the limits bind bubblewrap and everything it starts."""
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    size = limits.data_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


async def _stream_lines(stream: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while line := await stream.readline():
        yield line.rstrip(b"\n")


def _read_whole(root: Path, relative: str) -> bytes:
    """A data file's bytes, read when the caller asks for them (the reader each listed DataFile carries)."""
    return outbox.read_inside(root, relative)[0]


class LocalSandbox(Sandbox):
    """A Python session on this machine, isolated by bubblewrap (or, when asked by name, not isolated)."""

    def __init__(
        self,
        *,
        isolation: Isolation = "bubblewrap",
        python: str | None = None,
        limits: Limits | None = None,
        read_only_paths: Sequence[str] = (),
        timeout: float = 120.0,
        max_output: int = 20_000,
        interrupt_grace: float = 3.0,
        kernel: KernelMode = "auto",
    ) -> None:
        super().__init__(timeout=timeout, max_output=max_output, interrupt_grace=interrupt_grace, kernel=kernel)
        if isolation not in ("bubblewrap", "unsandboxed"):
            raise ValueError(f"isolation must be 'bubblewrap' or 'unsandboxed', not {isolation!r}")
        self.kind = isolation
        # Inside bubblewrap only the system is visible, so the system's Python; unsandboxed, this one.
        self.python = python or ("/usr/bin/python3" if isolation == "bubblewrap" else sys.executable)
        self.limits = limits or Limits(memory_mb=2048)
        self.read_only_paths = tuple(read_only_paths)
        self.data_dir: Path | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_tail = bytearray()
        # As root, drop to a user of the session's own; otherwise stay this user (bubblewrap cannot switch).
        self.uid = session_uid() if os.geteuid() == 0 and isolation == "bubblewrap" else None
        #: Why the data folder's total size is not bounded ("" when it is): only root can mount its tmpfs.
        self.data_unbounded_reason = ""

    def describe(self) -> str:
        limits = f"{self.limits.memory_mb} MB address space, {self.limits.processes} processes"
        if self.kind == "unsandboxed":
            return f"unsandboxed subprocess ({self.python}) with {limits}: NO isolation from this machine"
        user = f"uid {self.uid} (its own)" if self.uid is not None else f"uid {os.geteuid()}"
        return f"bubblewrap as {user}: no network, read-only system, private /tmp, {limits}, {self.describe_data()}"

    def describe_data(self) -> str:
        """What bounds the data folder, in words: its total size, or only each file's and why."""
        if self.data_dir is None:
            return f"{DATA_DIR} of up to {self.limits.data_mb} MB"
        if not self.data_unbounded_reason:
            return f"{DATA_DIR} bounded to {self.limits.data_mb} MB"
        return f"{DATA_DIR} files bounded to {self.limits.data_mb} MB each, not in total ({self.data_unbounded_reason})"

    async def _boot(self) -> None:
        if self.kind == "bubblewrap" and bubblewrap_path() is None:
            raise SandboxError("bubblewrap is not installed (apt-get install bubblewrap); or use DockerSandbox")
        if self.kind == "unsandboxed":
            warnings.warn(
                "LocalSandbox(isolation='unsandboxed') runs model-written code with no isolation from this machine",
                RuntimeWarning,
                stacklevel=3,
            )
        if not os.path.exists(self.python):
            raise SandboxError(f"no Python at {self.python}: install python3 or pass python=")
        reap_orphaned_data()
        _host, pid, started = owner_tag().rsplit(":", 2)
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"{DATA_PREFIX}{pid}_{started}_"))
        if self.kind == "unsandboxed":  # the kernel names its files by this host folder
            self.kernel_data_dir = str(self.data_dir)
        failed = datafs.mount_bounded(self.data_dir, self.limits.data_mb, self.uid)
        self.data_unbounded_reason = failed or ""
        watchdog.hold("folder" if failed else "mount", str(self.data_dir))
        if failed and self.uid is not None:
            os.chown(self.data_dir, self.uid, self.uid)

    def _command(self, seccomp_fd: int | None = None) -> list[str]:
        assert self.data_dir is not None
        kernel = [self.python, "-c", KERNEL_SOURCE]
        if self.kind == "unsandboxed":
            return kernel
        command = [
            bubblewrap_path() or "bwrap",
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "sandbox",
        ]
        if seccomp_fd is not None:
            command += ["--seccomp", str(seccomp_fd)]
        for path in (*SYSTEM_PATHS, *self.read_only_paths):
            if os.path.islink(path):
                command += ["--symlink", os.readlink(path), path]
            elif os.path.exists(path):
                command += ["--ro-bind", path, path]
        command += [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--size",
            str(self.limits.shm_mb * 1024 * 1024),
            "--tmpfs",
            "/dev/shm",
            "--size",
            str(self.limits.tmp_mb * 1024 * 1024),
            "--tmpfs",
            "/tmp",
            "--bind",
            str(self.data_dir),
            DATA_DIR,
            "--remount-ro",
            "/",
            "--chdir",
            DATA_DIR,
        ]
        return command + kernel

    async def _spawn_kernel(self) -> KernelChannel:
        if self.data_dir is None:
            raise SandboxError(f"could not start the {self.kind} sandbox: it has no data folder")
        env = {
            **KERNEL_ENV,
            **self.kernel_environment,
            "HARMONY_KERNEL_DATA": DATA_DIR if self.kind == "bubblewrap" else str(self.data_dir),
        }
        if self.kind == "unsandboxed":
            env["MPLCONFIGDIR"] = str(self.data_dir / ".matplotlib")
        limits = self.limits
        program = no_ptrace_program() if self.kind == "bubblewrap" else None
        seccomp_fd = None
        if program is not None:  # bubblewrap reads the filter from a file descriptor it inherits
            seccomp_fd = os.memfd_create("harmony-seccomp")
            os.write(seccomp_fd, program)
            os.lseek(seccomp_fd, 0, os.SEEK_SET)
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self._command(seccomp_fd),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=str(self.data_dir),
                start_new_session=True,
                limit=2**30,
                preexec_fn=lambda: _set_limits(limits),
                pass_fds=() if seccomp_fd is None else (seccomp_fd,),
                user=self.uid,
                group=self.uid,
                extra_groups=[] if self.uid is not None else None,
            )
        except OSError as exc:
            raise SandboxError(f"could not start the {self.kind} sandbox: {exc}") from exc
        finally:
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        process = self._process
        self._stderr_tail = bytearray()
        self._stderr_task = asyncio.create_task(self._collect_stderr(process))

        async def write(data: bytes) -> None:
            assert process.stdin is not None
            process.stdin.write(data)
            await process.stdin.drain()

        assert process.stdout is not None
        return KernelChannel(_stream_lines(process.stdout), write)

    async def _collect_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        tail = self._stderr_tail
        while chunk := await process.stderr.read(4096):
            tail.extend(chunk)
            del tail[:-4096]

    async def _kill_all(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        # The session holds bubblewrap's PID 1 of the sandbox; when it dies, the kernel
        # kills every process in that PID namespace, including any that called setsid.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        # RuntimeError: the process was started on an event loop that has closed; it is killed all the same.
        with contextlib.suppress(asyncio.TimeoutError, RuntimeError):
            await asyncio.wait_for(process.wait(), 5)

    async def _death_reason(self) -> str:
        process = self._process
        if process is None:
            return "the kernel never started"
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(process.wait(), 2)
        return describe_exit(process.returncode, self._stderr_tail.decode("utf-8", "replace"))

    def _read_file(self, relative: str, max_bytes: int) -> tuple[bytes, int, float]:
        """Read from the session's data folder on this host, one component at a time, never following a link."""
        if self.data_dir is None:
            raise outbox.Refused("the sandbox has no data folder")
        return outbox.read_inside(self.data_dir, relative, max_bytes)

    def _data_files(self, known: dict[str, tuple[int, float]], max_bytes: int) -> Iterator[DataFile]:
        if self.data_dir is None:
            return
        root = self.data_dir
        for relative, size, mtime in outbox.walk_inside(root):
            yield relative, size, mtime, functools.partial(_read_whole, root, relative)

    async def _shutdown(self) -> None:
        await self._kill_all()
        if self.data_dir is not None:
            datafs.remove(self.data_dir)
            watchdog.released("folder" if self.data_unbounded_reason else "mount", str(self.data_dir))
            self.data_dir = None
