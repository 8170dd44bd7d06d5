"""Bringing files out of a sandbox: what the sandbox names is a name inside it, never a host path.

The kernel runs in the same process as the model's code, so everything it
says (the images it saved, the files a cell wrote) is the sandbox's word and
may be a lie: a cell can append ``/etc/passwd`` to the kernel's image list, or
leave a symlink in ``/mnt/data`` that points anywhere. So the host never opens
a path the sandbox names. A name is first reduced to a path *relative to the
data folder* (:func:`relative_name`), with every part checked; the bytes are
then read through the sandbox itself: from the container with Docker's
archive API (which resolves paths inside the container's own root), or, for
bubblewrap, from the session's data folder one component at a time with
``O_NOFOLLOW`` (:func:`read_inside`, :func:`walk_inside`), refusing symlinks,
devices and FIFOs, and checking that the file opened is on the data folder's
own filesystem. What comes out is written under a host folder the host chose
(:func:`save_home`), at the same relative name, within size and count caps.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA_DIR = "/mnt/data"

#: Most bytes one file may have to be brought home (larger ones stay in the sandbox, with a note).
MAX_FILE_BYTES = 50 * 1024 * 1024
#: Most files one collection brings home, and most bytes in all.
MAX_FILES = 200
MAX_TOTAL_BYTES = 200 * 1024 * 1024
#: Most images one execution may list; more are counted, not listed or copied.
MAX_IMAGES = 20
#: Longest relative name accepted, and deepest folder nesting.
MAX_NAME_CHARS = 255
MAX_DEPTH = 16


class Refused(Exception):
    """A file the sandbox named cannot be brought out; the message says why, for the model and the user."""


@dataclass
class Collected:
    """What one collection brought home: host paths (inside the destination folder), and notes on what it left."""

    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: int = 0


def relative_name(path: object, *, hidden: bool = False) -> str:
    """``path`` (a name the sandbox gave) as a clean path relative to the data folder, or :class:`Refused`.

    Relative names are taken as inside the data folder, as the kernel does. Refused: anything that is not
    a string, control characters, ``..`` or a path that normalises outside the data folder, hidden parts
    (caches such as ``.matplotlib``; allowed with ``hidden=True``, for names only listed), over-long names and
    deep nesting.
    """
    if not isinstance(path, str) or not path:
        raise Refused(f"not a file name: {path!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise Refused(f"the name {path!r} holds control characters")
    full = path if path.startswith("/") else posixpath.join(DATA_DIR, path)
    if ".." in full.split("/"):
        raise Refused(f"{path!r} climbs out with '..'")
    full = posixpath.normpath(full)
    if not full.startswith(DATA_DIR + "/"):
        raise Refused(f"{path!r} is outside {DATA_DIR}")
    relative = full[len(DATA_DIR) + 1 :]
    parts = relative.split("/")
    if len(relative) > MAX_NAME_CHARS or len(parts) > MAX_DEPTH:
        raise Refused(f"{path[:80]!r}... is too long or too deeply nested")
    if not hidden and any(part.startswith(".") for part in parts):
        raise Refused(f"{path!r} is hidden (a dot file or folder)")
    return relative


def _open_inside(root: Path, relative: str) -> int:
    """An fd on ``root/relative`` opened component by component with O_NOFOLLOW; Refused for anything else."""
    parts = relative.split("/")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(root, flags | os.O_DIRECTORY)
    except OSError as exc:
        raise Refused(f"the data folder cannot be opened: {exc.strerror}") from None
    device = os.fstat(fd).st_dev
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            except OSError as exc:
                raise Refused(f"{posixpath.join(DATA_DIR, relative)}: a folder on the way is {_why(exc)}") from None
            os.close(fd)
            fd = next_fd
        try:
            file_fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
        except OSError as exc:
            raise Refused(f"{posixpath.join(DATA_DIR, relative)} is {_why(exc)}") from None
    finally:
        os.close(fd)
    info = os.fstat(file_fd)
    if not stat.S_ISREG(info.st_mode) or info.st_dev != device:
        os.close(file_fd)
        raise Refused(f"{posixpath.join(DATA_DIR, relative)} is not a regular file in the data folder")
    return file_fd


def _why(exc: OSError) -> str:
    import errno

    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return "a symbolic link or not a folder (links are not followed out of the sandbox)"
    if exc.errno == errno.ENOENT:
        return "missing"
    return exc.strerror or str(exc)


def read_inside(root: Path, relative: str, max_bytes: int = MAX_FILE_BYTES) -> tuple[bytes, int, float]:
    """(bytes, size, mtime) of ``relative`` under the host folder ``root``, never following a link; Refused past
    ``max_bytes``."""
    fd = _open_inside(root, relative)
    try:
        info = os.fstat(fd)
        size = info.st_size
        if size > max_bytes:
            raise Refused(f"{posixpath.join(DATA_DIR, relative)} is {size:,} bytes, over the {max_bytes:,}-byte cap")
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise Refused(f"{posixpath.join(DATA_DIR, relative)} grew past the {max_bytes:,}-byte cap")
        return data, size, info.st_mtime
    finally:
        os.close(fd)


def walk_inside(root: Path) -> Iterator[tuple[str, int, float]]:
    """(relative name, size, mtime) of every regular, visible file under ``root``; links are never followed."""
    stack = [""]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(root / folder if folder else root))
        except OSError:
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            relative = posixpath.join(folder, entry.name) if folder else entry.name
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    if relative.count("/") < MAX_DEPTH:
                        stack.append(relative)
                elif entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    yield relative, info.st_size, info.st_mtime


class _ChunkReader:
    """A file-like view of an iterator of byte chunks (Docker's archive stream), for tarfile's stream mode."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def tar_members(chunks: Iterable[bytes]) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    """The members of a tar stream, one at a time; read a member's bytes before asking for the next."""
    # "r|" reads a stream through read() alone, which _ChunkReader has; typeshed's overloads want a whole file.
    with tarfile.open(fileobj=_ChunkReader(chunks), mode="r|") as archive:  # type: ignore[call-overload]
        for member in archive:
            yield member, archive


def member_name(member: tarfile.TarInfo, prefix: str) -> str | None:
    """A tar member's name relative to the archived folder (``prefix``), or None for the folder itself."""
    name = member.name
    if name == prefix or name == prefix + "/":
        return None
    if not name.startswith(prefix + "/"):
        return None
    return name[len(prefix) + 1 :]


def safe_part(part: str) -> str:
    """A name part fit for a host folder and a terminal: control and shell-odd characters become '_'."""
    cleaned = "".join(c if c.isprintable() and c not in '\\:*?"<>|' else "_" for c in part)
    return cleaned.strip() or "_"


def save_home(dest: Path, relative: str, data: bytes) -> Path:
    """Write ``data`` at ``dest/relative`` (a name :func:`relative_name` accepted); returns the host path.

    The host chose ``dest``; each part of the name is made safe again, and the file is written without
    following a link that may already be there.
    """
    parts = [safe_part(p) for p in relative.split("/")]
    target = dest.joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.parent.resolve().is_relative_to(dest.resolve()):
        raise Refused(f"{relative!r} would land outside {dest}")
    with contextlib.suppress(FileNotFoundError):
        if target.is_symlink() or not target.is_file():
            target.unlink()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    return target


def translated(value: object, kernel_dir: str) -> object:
    """A kernel's list of names with its own data folder written as /mnt/data (the only form accepted after)."""
    if kernel_dir == DATA_DIR or not isinstance(value, list):
        return value
    prefix = kernel_dir.rstrip("/") + "/"
    return [DATA_DIR + "/" + v[len(prefix) :] if isinstance(v, str) and v.startswith(prefix) else v for v in value]


def count(value: object) -> int:
    """A count the kernel sent (its word, so checked): a whole number of at least 0, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def sandbox_names(value: object, what: str, cap: int, unlisted: int = 0) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The valid data-folder names in a kernel's list (as ``/mnt/data/...``), at most ``cap``; notes on the rest
    (``unlisted``: how many more the kernel saved and did not list)."""
    items = value if isinstance(value, list) else []
    kept: list[str] = []
    refused: list[str] = []
    for item in items:
        try:
            name = f"{DATA_DIR}/{relative_name(item, hidden=True)}"
        except Refused as exc:
            refused.append(str(exc))
            continue
        if name not in kept:
            kept.append(name)
    notes: list[str] = []
    if refused:
        notes.append(f"{len(refused)} {what} name(s) from the sandbox were ignored: {refused[0]}")
    if len(kept) + unlisted > cap:
        more = len(kept) + unlisted - cap
        notes.append(f"{more} more {what}s were saved in {DATA_DIR} than the {cap} listed here")
    return tuple(kept[:cap]), tuple(notes)


def bring_named(sandbox: Any, dest: Path, names: list[str], caps: tuple[int, int, int]) -> Collected:
    """Copy the named files (see ``Sandbox.bring_home``); blocking."""
    max_files, max_file_bytes, max_total = caps
    collected, total = Collected(), 0
    for name in names:
        try:
            relative = relative_name(name)
            if len(collected.files) >= max_files or total >= max_total:
                raise Refused(
                    f"{name} was left in the sandbox: over the cap of {max_files} files / {max_total:,} bytes"
                )
            data, size, mtime = sandbox._read_file(relative, min(max_file_bytes, max_total - total))
            collected.files.append(save_home(dest, relative, data))
            sandbox._brought[(str(dest), relative)] = (size, mtime)
            total += len(data)
        except Exception as exc:  # Refused, or the sandbox failed mid-copy: the answer stands, with a note
            collected.skipped += 1
            collected.notes.append(f"not copied out of the sandbox: {exc}")
    return collected


def bring_all(sandbox: Any, dest: Path, caps: tuple[int, int, int]) -> Collected:
    """Copy every new or changed file (see ``Sandbox.bring_home``); blocking."""
    max_files, max_file_bytes, max_total = caps
    collected, total, left = Collected(), 0, 0
    try:
        known = {name: seen for (folder, name), seen in sandbox._brought.items() if folder == str(dest)}
        for name, size, mtime, read in sandbox._data_files(known, max_file_bytes):
            try:
                relative = relative_name(name)
            except Refused:
                continue  # hidden files and caches stay in the sandbox
            key = (str(dest), relative)
            if sandbox._brought.get(key) == (size, mtime):
                continue
            sandbox._brought[key] = (size, mtime)
            if size > max_file_bytes:
                collected.notes.append(
                    f"{DATA_DIR}/{relative} ({size:,} bytes) is over the {max_file_bytes:,}-byte cap and stays in the sandbox"
                )
                continue
            if len(collected.files) >= max_files or total + size > max_total:
                left += 1
                del sandbox._brought[key]  # a later collection may have room
                continue
            try:
                data = read()
                collected.files.append(save_home(dest, relative, data))
                total += len(data)
            except (Refused, OSError) as exc:
                collected.notes.append(f"not copied out of the sandbox: {exc}")
    except Exception as exc:  # the sandbox went away or sent something unreadable mid-way
        collected.notes.append(f"copying files out of the sandbox stopped: {type(exc).__name__}: {exc}")
    if left:
        collected.skipped += left
        collected.notes.append(
            f"{left} more files stay in the sandbox: over the cap of {max_files} files / {max_total:,} bytes per copy"
        )
    return collected
