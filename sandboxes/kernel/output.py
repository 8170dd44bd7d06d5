"""Inside the sandbox: what a cell produced, made fit for the reply.

Output is captured to files (the server redirects fds 1 and 2), so it is
read back here within the size the host asked for, keeping head and tail;
the data folder is listed before and after a cell to report the files it
wrote; images shown by ``display()`` are saved there. Standard library only.
"""

from __future__ import annotations

import base64
import os

DATA_DIR = os.environ.get("HARMONY_KERNEL_DATA", "/mnt/data")


def truncate(text: str, limit: int) -> tuple[str, int]:
    """Keep the head and the tail of ``text`` within ``limit`` characters; return (text, characters cut)."""
    if limit <= 0 or len(text) <= limit:
        return text, 0
    head = limit // 2
    tail = limit - head
    cut = len(text) - limit
    return f"{text[:head]}\n[... {cut} characters cut ...]\n{text[-tail:]}", cut


def read_capture(file, limit: int) -> tuple[str, int]:
    """Read a capture file without loading more than the head and tail that will be kept."""
    size = file.seek(0, os.SEEK_END)
    budget = max(limit, 0) * 4 + 16  # up to 4 bytes a character
    if limit <= 0 or size <= budget:
        file.seek(0)
        return truncate(file.read().decode("utf-8", "replace"), limit)
    file.seek(0)
    head = file.read(budget // 2).decode("utf-8", "replace")
    file.seek(size - budget // 2)
    tail = file.read().decode("utf-8", "replace")
    kept_head, kept_tail = head[: limit // 2], tail[-(limit - limit // 2) :]
    cut_bytes = size - len(kept_head.encode()) - len(kept_tail.encode())
    return f"{kept_head}\n[... about {cut_bytes} bytes cut ...]\n{kept_tail}", cut_bytes


def oom_kills() -> int | None:
    """How many processes the sandbox's memory cgroup has killed so far (cgroup v2, then v1); None where unseen."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as file:
                for line in file:
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
        except (OSError, ValueError):
            continue
    return None


def snapshot(folder: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            try:
                found[path] = os.stat(path).st_mtime
            except OSError:
                pass
    return found


def save_image(data, extension: str, name: str) -> str:
    """Write displayed image data (base64 text or raw bytes; SVG as text) to the data folder; returns its path."""
    if isinstance(data, str):
        data = data.encode() if extension == "svg" else base64.b64decode(data)
    path = os.path.join(DATA_DIR, f"{name}.{extension}")
    with open(path, "wb") as file:
        file.write(data)
    return path
