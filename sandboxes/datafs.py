"""The bubblewrap sandbox's data folder: a host folder holding a size-bounded tmpfs where we may mount one.

Why a tmpfs mounted on the host folder rather than one bubblewrap makes
(``--size N --tmpfs /mnt/data``): bubblewrap's lives only as long as its
process, and a kernel restart starts a new bubblewrap, so every restart would
lose the files. A mount on the host folder outlives kernel restarts, and the
host still finds the files where it always did (``LocalSandbox.data_dir``).
Like Docker's ``/mnt/data``, the tmpfs is memory: what the code writes is
counted against ``data_mb`` and never reaches the host's disk; past it a
write fails with ENOSPC ("No space left on device"), and deleting files frees
the space again. The number of files is bounded too, since each costs kernel
memory the size option does not count.

Mounting needs CAP_SYS_ADMIN (root). Elsewhere the folder stays a plain one,
bounded per file only (RLIMIT_FSIZE), and the sandbox says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import shutil
from pathlib import Path

MNT_DETACH = 2  # umount2 flag: detach now, free once the last open file in it is closed


@functools.cache
def _c_library() -> ctypes.CDLL:
    """The C library, for mount(2) and umount2(2), which Python's os module does not offer."""
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def inode_limit(size_mb: int) -> int:
    """How many files and folders the tmpfs may hold: enough for ordinary work, few enough to bound their memory."""
    return max(4096, size_mb * 64)


def mount_bounded(folder: Path, size_mb: int, uid: int | None = None) -> str | None:
    """Mount a ``size_mb`` tmpfs on ``folder`` (owned by ``uid``, mode 0700); returns None, or why it could not."""
    options = f"size={size_mb}m,nr_inodes={inode_limit(size_mb)},mode=0700"
    if uid is not None:
        options += f",uid={uid},gid={uid}"
    try:
        result = _c_library().mount(b"harmony-sandbox", os.fsencode(folder), b"tmpfs", 0, options.encode())
    except (OSError, AttributeError) as exc:  # no C library to call
        return f"mount is unavailable: {exc}"
    if result != 0:
        return f"cannot mount a tmpfs: {os.strerror(ctypes.get_errno())}"
    return None


def is_mounted(folder: Path) -> bool:
    """Whether ``folder`` is a mount point (the bounded tmpfs is in place)."""
    return os.path.ismount(folder)


def unmount(folder: Path) -> None:
    """Detach the tmpfs on ``folder`` if there is one; its memory is freed once no process holds a file in it."""
    if is_mounted(folder):
        with contextlib.suppress(OSError, AttributeError):
            _c_library().umount2(os.fsencode(folder), MNT_DETACH)


def remove(folder: Path) -> None:
    """Unmount and delete a data folder; safe to call on one already gone."""
    unmount(folder)
    shutil.rmtree(folder, ignore_errors=True)
