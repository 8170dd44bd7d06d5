"""The display's bubblewrap mode: the command lines that put an app, and the X server itself, in namespaces.

``VirtualDisplay(sandbox="bubblewrap")`` uses these. Both share the
base: every namespace unshared (no network unless asked), no capabilities,
the system read-only, a private /tmp, /var and /run, and its own /proc.

- An app also sees the display's folder (its home, the cookie, the bus
  socket), its display's X socket, and the paths named read-only.
- The X server (Xvfb) sees no network ever, and of the host's files only the
  system, its cookie file (read-only) and the folder where it makes its
  socket, mounted as its /tmp/.X11-unix; the host reaches that socket
  through a link under an ordinary display number (``claim_display``), as
  for the docker mode. An app that breaks into the X server is still in a
  sandbox, without the agent's files or network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

#: Host paths a sandboxed app or X server sees, read-only (those that exist): the system, not the user's files.
SYSTEM_PATHS = (
    "/usr",
    "/etc/fonts",
    "/etc/ld.so.cache",
    "/etc/alternatives",
    "/etc/passwd",
    "/etc/group",
    "/etc/localtime",
    "/etc/machine-id",
    "/etc/X11",
    "/etc/xdg",
    "/etc/gtk-3.0",
    "/etc/mime.types",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/var/lib/dbus/machine-id",
)
#: Where an X server makes its socket; inside the sandbox, the display's own folder is mounted here.
X_SOCKETS = Path("/tmp/.X11-unix")


def base(*, network: bool = False, read_only: Sequence[str] = ()) -> list[str]:
    """bwrap and the options every sandboxed program of a display gets (see the module's docstring)."""
    wrapper = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    wrapper += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var", "--tmpfs", "/run"]
    if network:
        wrapper += ["--share-net", "--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf"]
    for path in SYSTEM_PATHS + tuple(read_only):
        wrapper += ["--ro-bind-try", path, path]
    for link in ("bin", "lib", "lib64", "sbin"):  # merged /usr: /bin -> usr/bin ...
        target = Path("/") / link
        if target.is_symlink():
            wrapper += ["--symlink", os.readlink(target), str(target)]
        elif target.is_dir():
            wrapper += ["--ro-bind", str(target), str(target)]
    return wrapper


def app_command(
    command: Sequence[str], *, folder: Path, display: str, network: bool, read_only: Sequence[str]
) -> list[str]:
    """``command`` run as an app of ``display`` in its sandbox: the display's folder and X socket besides the base."""
    x_socket = X_SOCKETS / f"X{display.lstrip(':').split('.')[0]}"
    wrapper = base(network=network, read_only=read_only)
    wrapper += ["--ro-bind", str(x_socket), str(x_socket), "--bind", str(folder), str(folder)]
    return wrapper + ["--chdir", str(folder / "home"), "--", *command]


def server_command(command: Sequence[str], *, sockets: Path, authority: str) -> list[str]:
    """``command`` (an X server) run in a sandbox where ``sockets`` is its /tmp/.X11-unix and ``authority``
    its only other file of the host's; it listens on display 0 there, whatever number the host gives it."""
    wrapper = base() + ["--bind", str(sockets), str(X_SOCKETS), "--ro-bind", authority, authority]
    return wrapper + ["--", *command]
