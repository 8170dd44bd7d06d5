"""The whole desktop in a container: Xvfb, openbox, the session bus with AT-SPI, and the apps.

``VirtualDisplay(sandbox="docker")`` uses this. The container runs the
desktop image (``sandboxes/images/desktop``) with no network (unless asked),
no host files but the display's own folder and the paths named read-only,
and Docker's init to reap its processes. The agent reaches the X server
through the socket the container creates in the shared folder: a symlink
``/tmp/.X11-unix/X<n>``, guarded by a lock file like any X server's, gives
it an ordinary display name, so the same tools (XTest, screen grabs,
xdotool, AT-SPI over the shared bus socket) work unchanged. As on the host,
the X server lets in only clients with the display's cookie: the
authority file holds it under the container's name for the apps inside, and
under the host's display number for the agent's own clients outside.

A container left by a killed agent is labelled with its owner and removed
at the next start, like the folder and the symlink.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harmony_agent.sandboxes._owner import owner_tag
from harmony_agent.sandboxes.base import SandboxError

if TYPE_CHECKING:  # docker is imported when a desktop starts, not with this module
    from docker.models.containers import Container

INSIDE_DISPLAY = ":0"
INSIDE_PATH = "/usr/local/bin:/usr/bin:/bin"
X_SOCKETS = Path("/tmp/.X11-unix")

START_SCRIPT = """#!/bin/sh
# The desktop inside the container (written by harmony-agent for one display).
F={folder}
export HOME="$F/home" XDG_RUNTIME_DIR="$F/runtime" DISPLAY={display} XAUTHORITY="$F/Xauthority"
Xvfb {display} -screen 0 {width}x{height}x{depth} -nolisten tcp -auth "$F/Xauthority" -noreset &
i=0; while [ ! -S /tmp/.X11-unix/X0 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
xauth -f "$F/Xauthority" add {display} . {cookie}
{window_manager}
{accessibility}
touch "$F/ready"
wait
"""
WINDOW_MANAGER = 'openbox --sm-disable >/dev/null 2>&1 &\ni=0; while ! xprop -root _NET_SUPPORTING_WM_CHECK 2>/dev/null | grep -q "window id" && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done'
ACCESSIBILITY = (
    'dbus-daemon --session --nofork --address="unix:path=$F/runtime/bus" &\n'
    'i=0; while [ ! -S "$F/runtime/bus" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\n'
    'DBUS_SESSION_BUS_ADDRESS="unix:path=$F/runtime/bus" /usr/libexec/at-spi-bus-launcher --launch-immediately &'
)


def claim_display(socket: Path) -> int:
    """A free display number on the host, held by a lock file with our pid, whose socket is a link to ``socket``
    (the X server's, made inside a container or a bubblewrap sandbox with a /tmp of its own)."""
    for number in range(90, 1000):
        lock = Path(f"/tmp/.X{number}-lock")
        try:
            handle = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            continue
        os.write(handle, f"{os.getpid():10d}\n".encode())
        os.close(handle)
        link = X_SOCKETS / f"X{number}"
        try:
            X_SOCKETS.mkdir(mode=0o1777, exist_ok=True)
            link.symlink_to(socket)
            return number
        except FileExistsError:
            lock.unlink()
    raise SandboxError("no free display number for a sandboxed X server")


def release_display(number: int) -> None:
    """Remove what ``claim_display`` made for ``number``: the socket's link and the lock."""
    for path in (X_SOCKETS / f"X{number}", Path(f"/tmp/.X{number}-lock")):
        try:
            path.unlink()
        except OSError:
            pass


class DockerDesktop:
    """One container running a display; the host sees it as display ``:<number>``."""

    def __init__(
        self,
        folder: Path,
        width: int,
        height: int,
        depth: int,
        *,
        image: str,
        network: bool,
        read_only: Sequence[str],
        window_manager: bool,
        accessibility: bool,
    ) -> None:
        self.folder, self.width, self.height, self.depth = folder, width, height, depth
        self.image, self.network, self.read_only = image, network, list(read_only)
        self.window_manager, self.accessibility = window_manager, accessibility
        self.container: Container | None = None
        self.number: int | None = None
        self._cookie = secrets.token_hex(16)

    def start(self) -> str:
        """Start the container and claim a display number on the host; returns the display name."""
        from docker.errors import DockerException, ImageNotFound

        from harmony_agent.sandboxes.docker import OWNER_LABEL, SANDBOX_LABEL, docker_client, reap_orphans

        client = docker_client()
        reap_orphans(client)  # containers of killed agents, desktops included (they carry the same labels)
        try:
            client.images.get(self.image)
        except ImageNotFound:
            raise SandboxError(
                f"the desktop image {self.image} is missing: python -m harmony_agent.sandboxes.images.desktop"
            ) from None
        x11 = self.folder / "x11"
        x11.mkdir(mode=0o1777)
        os.chmod(x11, 0o1777)
        script = self.folder / "start.sh"
        script.write_text(
            START_SCRIPT.format(
                folder=self.folder,
                display=INSIDE_DISPLAY,
                width=self.width,
                height=self.height,
                depth=self.depth,
                cookie=self._cookie,
                window_manager=WINDOW_MANAGER if self.window_manager else "",
                accessibility=ACCESSIBILITY if self.accessibility else "",
            )
        )
        volumes = {
            str(self.folder): {"bind": str(self.folder), "mode": "rw"},
            str(x11): {"bind": "/tmp/.X11-unix", "mode": "rw"},
        }
        for path in self.read_only:
            volumes[path] = {"bind": path, "mode": "ro"}
        try:
            container = self.container = client.containers.run(
                self.image,
                ["sh", str(script)],
                detach=True,
                init=True,
                network_mode="host" if self.network else "none",
                volumes=volumes,
                labels={SANDBOX_LABEL: "desktop", OWNER_LABEL: owner_tag()},
                environment={"PATH": INSIDE_PATH},
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                pids_limit=512,
                mem_limit="2g",
                tmpfs={"/tmp": ""},
            )
        except DockerException as exc:
            raise SandboxError(f"the desktop container did not start: {exc}") from exc
        deadline = time.monotonic() + 60
        while not (self.folder / "ready").exists():
            container.reload()
            if container.status not in ("created", "running") or time.monotonic() > deadline:
                logs = container.logs(tail=20).decode(errors="replace")
                self.stop()
                raise SandboxError(f"the desktop container did not come up: {logs.strip() or container.status}")
            time.sleep(0.1)
        self.number = claim_display(x11 / "X0")
        self._add_host_entry(f":{self.number}")
        return f":{self.number}"

    def _add_host_entry(self, display: str) -> None:
        """The cookie under the host's name for the display, so the agent's clients outside find it (no xhost)."""
        import subprocess

        try:
            subprocess.run(
                ["xauth", "-f", str(self.folder / "Xauthority"), "add", display, ".", self._cookie],
                env={"PATH": INSIDE_PATH},
                check=True,
                capture_output=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            self.stop()
            raise SandboxError(f"could not add the desktop container's cookie for {display}: {exc}") from exc

    def launch(self, command: Sequence[str], env: Mapping[str, str]):
        """Run an app in the container (``docker exec``); the returned process is the exec client."""
        import subprocess

        if self.container is None or self.container.id is None:
            raise SandboxError("the desktop container is not running")
        inside = {**env, "DISPLAY": INSIDE_DISPLAY, "PATH": INSIDE_PATH}
        flags = [part for key, value in inside.items() for part in ("-e", f"{key}={value}")]
        return subprocess.Popen(
            ["docker", "exec", *flags, "-w", inside.get("HOME", "/"), self.container.id, *command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except Exception:
                pass
            self.container = None
        if self.number is not None:
            release_display(self.number)
            self.number = None
