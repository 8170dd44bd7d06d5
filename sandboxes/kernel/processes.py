"""Inside the sandbox: the processes around the kernel, not the code it runs.

The interrupt's sweep of the kernel's forked copies (fork bombs,
multiprocessing workers), and the container's PID 1 (``init``), which reaps
orphans and kills every other process when the engine asks. Standard library only.
"""

from __future__ import annotations

import os
import signal
import time

KERNEL_PID = os.getpid()


def _forked_copies(own_cmdline: bytes) -> list[int]:
    """Processes that are forks of this kernel (same command line, never exec'd), other than the kernel itself."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == KERNEL_PID:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                if file.read() == own_cmdline:
                    found.append(int(entry))
        except OSError:
            pass
    return found


def kill_forked_copies(time_limit: float = 5.0) -> int:
    """On interrupt, kill the kernel's forked copies (multiprocessing workers, fork bombs).

    A fork bomb that catches its errors never returns to the kernel, so the
    interrupt alone would leave it spinning at the process limit. Programs the
    code started with exec (servers, shells) have other command lines and are
    left alone, as a notebook's interrupt would. Copies are stopped first,
    round after round, because a stopped process cannot fork; once a round
    finds none still running, all are killed and our own children reaped.
    Returns how many were killed.
    """
    try:
        with open("/proc/self/cmdline", "rb") as file:
            own = file.read()
    except OSError:
        return 0  # no /proc: nothing to sweep with
    deadline = time.monotonic() + time_limit
    stopped: set[int] = set()
    while time.monotonic() < deadline:
        fresh = [pid for pid in _forked_copies(own) if pid not in stopped]
        if not fresh:
            break
        for pid in fresh:
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
            stopped.add(pid)
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for pid in stopped:
        try:
            os.waitpid(pid, 0)  # our own children would stay zombies and hold process slots
        except ChildProcessError:
            pass  # a grandchild: its parent's death hands it to PID 1, which reaps it
    return len(stopped)


def init_main() -> None:
    """PID 1 of a container: reap orphans; obey only the engine's signals (SIGUSR1: kill every other process).

    Signals stay blocked and are taken with sigwaitinfo, which names the
    sender: one from inside the container (user code's ``os.kill(1, ...)``,
    ``pkill``) carries a pid there and is ignored, so the sandbox cannot stop
    itself; one from the engine, outside its PID namespace, carries pid 0.
    PID 1 is also made non-dumpable, so code running as the same user cannot
    ptrace it.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (OSError, AttributeError):
        pass
    watched = {signal.SIGCHLD, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    while True:
        info = signal.sigwaitinfo(watched)
        if info.si_signo == signal.SIGUSR1 and info.si_pid == 0:
            try:
                os.kill(-1, signal.SIGKILL)  # every process this user may signal, except PID 1 itself
            except ProcessLookupError:
                pass
        elif info.si_signo in (signal.SIGTERM, signal.SIGINT) and info.si_pid == 0:
            os._exit(0)
        while True:  # reap after every signal: a blocked SIGCHLD is delivered once for many children
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
