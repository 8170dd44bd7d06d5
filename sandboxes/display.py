"""VirtualDisplay: an X server of the agent's own (Xvfb), with a window manager and the apps it launches.

It picks a free display number itself (Xvfb's ``-displayfd``), guards it with
its own authority file, and starts openbox so windows have titles, focus and
geometry. Everything it starts is in its own process group and is asked to
die with this process (``PR_SET_PDEATHSIG``), so even a killed agent leaves
no X server behind; the display's folder (authority cookie, the apps' home)
and a stale X socket left by a killed server are reaped by the next start.
It never touches a real display, nor this process's environment.

Apps see a minimal environment: the display, its authority file, the
session bus, locale, PATH, a HOME of the display's own, and what the caller
names; never the agent's API keys. With ``sandbox="bubblewrap"`` each app
also runs in its own namespaces: no network (unless ``network=True``), the
system read-only, a private /tmp, and of the host's files only the
display's folder and the paths in ``read_only``; and so does the X server,
with no network and only its cookie and socket folder of the host's files
(``display_bubblewrap.py``).

The X server lets in only clients that show the display's cookie: no
client is admitted by user or host, so an app on one display cannot reach
another display of the same user by its name alone. The agent's own X
clients (pointer, keyboard, pixels) hold the cookie in their own
environment: they run in processes started by ``start_client``, since the
agent's environment is never changed. Attaching to an existing display is
possible, but only by naming it explicitly.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from harmony_agent.sandboxes._owner import owner_is_gone, owner_tag
from harmony_agent.sandboxes.base import SandboxError
from harmony_agent.sandboxes.display_bubblewrap import app_command, server_command
from harmony_agent.sandboxes.display_docker import DockerDesktop, claim_display, release_display

_PR_SET_PDEATHSIG = 1
FOLDER_PREFIX = "harmony-display-"
X_SOCKETS = Path("/tmp/.X11-unix")
#: What a launched app inherits from the agent's environment; everything else (API keys...) stays behind.
PASSED_THROUGH = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
Sandbox = Literal["none", "bubblewrap", "docker"]


def reap_stale_displays(tmp: str | Path | None = None) -> list[str]:
    """Remove what displays of killed agents left: their folders (with the X cookie) and their X server's socket.

    A folder is reaped only when its ``owner`` file names a process on this
    host that is gone; a socket and lock only when the lock's server is gone.
    Returns the folders removed.
    """
    removed = []
    for folder in Path(tmp or tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        try:
            record = json.loads((folder / "owner").read_text())
        except (OSError, ValueError):
            continue  # not ours to judge, or a display still starting
        if not isinstance(record, dict) or not owner_is_gone(str(record.get("owner", ""))):
            continue
        number = record.get("number")
        if isinstance(number, int):
            _remove_stale_server_files(number, folder)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(str(folder))
    return removed


def _remove_stale_server_files(number: int, folder: Path) -> None:
    """Remove display ``number``'s socket (and lock, if any) when no server answers on it any more, or when it
    is a link into ``folder`` (a sandboxed server of the dead owner, which may still be dying)."""
    lock = Path(f"/tmp/.X{number}-lock")
    path = X_SOCKETS / f"X{number}"
    if path.is_symlink() and os.readlink(path).startswith(f"{folder}{os.sep}"):
        for stale in (path, lock):
            try:
                stale.unlink()
            except OSError:
                pass
        return
    try:
        pid: int | None = int(lock.read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None:
        try:
            os.kill(pid, 0)
            return  # a live server holds this number now
        except ProcessLookupError:
            pass
        except PermissionError:
            return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1)
        probe.connect(str(path))
        return  # a server answers: a new display took the number
    except ConnectionRefusedError:
        pass  # a socket file nobody listens on: stale
    except OSError:
        pass
    finally:
        probe.close()
    for stale in (path, lock):
        try:
            stale.unlink()
        except OSError:
            pass


def server_environment() -> dict[str, str]:
    """The environment of the display's own programs (Xvfb, xauth): a PATH and a locale, nothing of the agent's.

    An app on the display runs as the same user, so it can read any of these programs' ``/proc/PID/environ``;
    what the agent holds (API keys...) must not be there.
    """
    return {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"}


def _die_with_parent(signal_number: int = signal.SIGKILL) -> None:
    """In the child, before exec: be sent ``signal_number`` when the process that started us dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal_number)
    except OSError:
        pass
    os.setpgrp()


class VirtualDisplay:
    """An Xvfb display with openbox; use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        width: int = 1280,
        height: int = 800,
        *,
        depth: int = 24,
        window_manager: bool = True,
        accessibility: bool = True,
        display: str | None = None,
        sandbox: Sandbox = "none",
        network: bool = False,
        read_only: Sequence[str | Path] = (),
        env: Mapping[str, str] | None = None,
        image: str = "harmony-agent/desktop:latest",
    ) -> None:
        """``sandbox="bubblewrap"`` runs each launched app in its own namespaces (see the module's docstring);
        ``sandbox="docker"`` runs the whole desktop (X server, window manager, bus, apps) in a container of
        ``image`` (``display_docker.py``); ``network`` gives the apps the host's network; ``read_only`` lists
        host paths they may read; ``env`` is added to every app's minimal environment."""
        if sandbox not in ("none", "bubblewrap", "docker"):
            raise SandboxError(f"unknown display sandbox {sandbox!r}; use 'none', 'bubblewrap' or 'docker'")
        self.image = image
        self._docker: DockerDesktop | None = None
        self.sandbox = sandbox
        self.network = network
        self.read_only = [str(Path(p).resolve()) for p in read_only]
        self.extra_env = dict(env or {})
        self.width, self.height, self.depth = width, height, depth
        self.window_manager = window_manager
        self.accessibility = accessibility
        #: The session bus shared by the display's apps and whoever reads their accessibility trees.
        self.session_bus: str | None = None
        self.attached = display is not None  # an existing display the user named explicitly
        self.display = display
        self.authority: str | None = os.environ.get("XAUTHORITY") if self.attached else None
        self._folder: Path | None = None
        self._processes: list[subprocess.Popen] = []
        self._claimed: int | None = None  # the host's display number for a sandboxed X server
        self.started = False

    def fresh(self) -> VirtualDisplay:
        """A new, unstarted display with this one's settings (a display of its own for another session)."""
        if self.attached:
            raise SandboxError(f"display {self.display} was attached by name and is shared; it cannot be copied")
        return VirtualDisplay(
            self.width,
            self.height,
            depth=self.depth,
            window_manager=self.window_manager,
            accessibility=self.accessibility,
            sandbox=self.sandbox,
            network=self.network,
            read_only=self.read_only,
            env=self.extra_env,
        )

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> VirtualDisplay:
        if self.started:
            return self
        if self.attached:
            self.started = True
            return self
        if self.sandbox == "docker":
            return self._start_in_docker()
        for tool in ("Xvfb", "xauth") + (("bwrap",) if self.sandbox == "bubblewrap" else ()):
            if shutil.which(tool) is None:
                raise SandboxError(
                    f"{tool} is not installed: apt-get install xvfb xauth x11-xserver-utils openbox bubblewrap"
                )
        folder, authority = self._make_folder()
        try:
            self._start_server(folder, authority)
        except BaseException:
            self.stop()
            raise
        self.started = True
        # No ``xhost``: Xvfb reads the cookie from its -auth file (it rereads the file while it holds no
        # cookie), and admits nothing else. The agent's own connections go through start_client.
        if self.window_manager:
            if shutil.which("openbox") is None:
                self.stop()
                raise SandboxError("openbox is not installed: apt-get install openbox")
            self._spawn(["openbox", "--sm-disable"])
            self._wait_for_window_manager()
        if self.accessibility:
            self._start_accessibility_bus()
        return self

    def _start_server(self, folder: Path, authority: str) -> None:
        """Start Xvfb (in a sandbox of its own in the bubblewrap mode); name the display and give it a cookie."""
        cookie = secrets.token_hex(16)
        read_end, write_end = os.pipe()
        command = ["Xvfb", "-displayfd", str(write_end), "-screen", "0", f"{self.width}x{self.height}x{self.depth}"]
        command += ["-nolisten", "tcp", "-auth", authority, "-noreset"]
        if self.sandbox == "bubblewrap":
            sockets = folder / "x11"  # its /tmp/.X11-unix; the host's display number is a link into it
            sockets.mkdir(mode=0o1777)
            os.chmod(sockets, 0o1777)
            self._claimed = claim_display(sockets / "X0")
            self.display = f":{self._claimed}"
            self._write_owner(self._claimed)
            self._add_cookie(authority, cookie)  # before the server starts: it sees the file as it is then
            command = server_command(command, sockets=sockets, authority=authority)
        try:
            server = subprocess.Popen(
                command,
                pass_fds=(write_end,),
                env=server_environment(),  # its /proc/PID/environ is readable by the apps: nothing of ours
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                # SIGTERM, not SIGKILL: told that the agent died, Xvfb removes its own socket and lock
                preexec_fn=lambda: _die_with_parent(signal.SIGTERM),
            )
        finally:
            os.close(write_end)
        self._processes.append(server)
        number = self._read_display_number(read_end, server)  # 0 in the bubblewrap mode: its own /tmp
        if self._claimed is None:
            self.display = f":{number}"
            self._write_owner(number)
            self._add_cookie(authority, cookie)

    def _add_cookie(self, authority: str, cookie: str) -> None:
        subprocess.run(
            ["xauth", "-f", authority, "add", str(self.display), ".", cookie],
            env=server_environment(),
            check=True,
            capture_output=True,
        )

    def _make_folder(self) -> tuple[Path, str]:
        """The display's folder: owner record, authority file, the apps' home and runtime folders.
        Folders left by killed agents are reaped first. Returns the folder and the authority file's path
        (also kept in ``_folder`` and ``authority``), so callers need not re-check them for None."""
        reap_stale_displays()
        folder = self._folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
        self._write_owner(None)
        for sub in ("home", "runtime"):
            (folder / sub).mkdir(mode=0o700)
        authority = self.authority = str(folder / "Xauthority")
        Path(authority).touch(mode=0o600)
        return folder, authority

    def _start_in_docker(self) -> VirtualDisplay:
        folder, _ = self._make_folder()
        self._docker = DockerDesktop(
            folder,
            self.width,
            self.height,
            self.depth,
            image=self.image,
            network=self.network,
            read_only=self.read_only,
            window_manager=self.window_manager,
            accessibility=self.accessibility,
        )
        try:
            self.display = self._docker.start()
        except BaseException:
            self.stop()
            raise
        self._write_owner(self._docker.number)
        if self.accessibility:
            self.session_bus = f"unix:path={folder / 'runtime' / 'bus'}"
        self.started = True
        return self

    def _write_owner(self, number: int | None) -> None:
        """Record who owns the folder (and which display), so a later start can reap it if we are killed."""
        assert self._folder is not None
        record = self._folder / "owner.tmp"
        record.write_text(json.dumps({"owner": owner_tag(), "number": number}))
        record.replace(self._folder / "owner")

    def _start_accessibility_bus(self) -> None:
        """One D-Bus session bus for the display's apps and the agent, with AT-SPI's bus on it.

        Without both, apps expose no accessibility tree; with them, GTK apps
        do, and Qt apps too (QT_LINUX_ACCESSIBILITY_ALWAYS_ON is set). When
        the programs are missing, the display works without a tree.
        """
        launcher = next(
            (
                p
                for p in ("/usr/libexec/at-spi-bus-launcher", "/usr/lib/at-spi2-core/at-spi-bus-launcher")
                if os.access(p, os.X_OK)
            ),
            None,
        )
        if shutil.which("dbus-daemon") is None or launcher is None:
            return
        # A socket path in the display's folder (not an abstract socket), so sandboxed apps without
        # the host's network namespace can reach it too.
        assert self._folder is not None
        bus = subprocess.Popen(
            [
                "dbus-daemon",
                "--session",
                "--nofork",
                "--print-address=1",
                f"--address=unix:path={self._folder / 'runtime' / 'bus'}",
            ],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            preexec_fn=_die_with_parent,
        )
        self._processes.append(bus)
        address = bus.stdout.readline().strip() if bus.stdout else ""
        if not address:
            return
        self.session_bus = address
        # The launcher starts its own bus daemon, a grandchild that would outlive a killed agent; so it
        # runs under a shell that, told by the kernel that we died (SIGTERM), kills its whole group.
        wrapper = 'trap "trap - TERM; kill 0" TERM; "$0" --launch-immediately & wait'
        self._processes.append(
            subprocess.Popen(
                ["sh", "-c", wrapper, launcher],
                env=self.env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=lambda: _die_with_parent(signal.SIGTERM),
            )
        )

    @staticmethod
    def _read_display_number(read_end: int, server: subprocess.Popen) -> int:
        deadline = time.monotonic() + 15
        data = b""
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            os.set_blocking(read_end, False)
            while time.monotonic() < deadline and not data.endswith(b"\n"):
                try:
                    chunk = pipe.read(16)
                except BlockingIOError:
                    chunk = None
                if chunk:
                    data += chunk
                elif server.poll() is not None:
                    error = server.stderr.read().decode(errors="replace").strip() if server.stderr else ""
                    raise SandboxError(
                        f"Xvfb exited at start: {error.splitlines()[-1] if error else server.returncode}"
                    )
                else:
                    time.sleep(0.01)
        if not data.strip().isdigit():
            server.kill()
            raise SandboxError("Xvfb did not report its display number in time")
        return int(data)

    def _wait_for_window_manager(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"], env=self.env(), capture_output=True, text=True
            )
            if "window id" in probe.stdout:
                return
            time.sleep(0.05)
        raise SandboxError("the window manager (openbox) did not start")

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The minimal environment of a program on this display: its DISPLAY, authority file, session bus,
        locale, PATH and a HOME of the display's own, plus the display's ``env`` and ``extra``.

        Nothing else of the agent's environment passes (API keys stay behind), nor any real display.
        """
        if not self.started or self.display is None:
            raise SandboxError("the display is not started")
        base = {key: os.environ[key] for key in PASSED_THROUGH if key in os.environ}
        base.setdefault("PATH", DEFAULT_PATH)
        base.setdefault("LANG", "C.UTF-8")
        base["DISPLAY"] = self.display
        if self.authority:
            base["XAUTHORITY"] = self.authority
        if self._folder is not None:
            base["HOME"] = str(self._folder / "home")
            base["XDG_RUNTIME_DIR"] = str(self._folder / "runtime")  # AT-SPI's bus socket lives here
        elif "HOME" in os.environ:  # an attached display: the user's own session
            base["HOME"] = os.environ["HOME"]
        if self.session_bus:
            base["DBUS_SESSION_BUS_ADDRESS"] = self.session_bus
            base["QT_LINUX_ACCESSIBILITY_ALWAYS_ON"] = "1"
        return {**base, **self.extra_env, **(extra or {})}

    def client_env(self) -> dict[str, str]:
        """The environment of the agent's own X clients on this display: its name and authority file, nothing else.

        Only a client with the cookie gets in, and python-xlib and mss read it from ``XAUTHORITY`` alone; the
        agent's own environment is never changed, so its X work runs in processes with this one.
        """
        if not self.started or self.display is None:
            raise SandboxError("the display is not started")
        env = {"DISPLAY": self.display}
        if self.authority:
            env["XAUTHORITY"] = self.authority
        elif "HOME" in os.environ:  # an attached display without XAUTHORITY: the user's ~/.Xauthority
            env["HOME"] = os.environ["HOME"]
        return env

    def start_client(self, command: Sequence[str]) -> subprocess.Popen:
        """Start an X client of the agent's own on this display (``client_env``, pipes on stdin and stdout).

        It is stopped with the display, runs in a session of its own (a Ctrl-C meant for the agent is not
        its), and should end by itself when its stdin closes, as it does when the agent dies.
        """
        return self._started(
            command,
            "start",
            env=self.client_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def sandboxed(self, command: Sequence[str]) -> list[str]:
        """``command`` as it runs for an app: unchanged, or inside bubblewrap (see ``display_bubblewrap.py``)."""
        if self.sandbox != "bubblewrap":
            return list(command)
        if self._folder is None or self.display is None:
            raise SandboxError("the bubblewrap sandbox needs a display of our own, not an attached one")
        return app_command(
            command, folder=self._folder, display=self.display, network=self.network, read_only=self.read_only
        )

    def launch(
        self, command: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None
    ) -> subprocess.Popen:
        """Start a program on this display (in its sandbox, with the minimal environment); it is stopped with the display."""
        if not command:
            raise SandboxError("no command to launch")
        if self._docker is not None:
            process = self._docker.launch(command, self.env(env))
            self._processes.append(process)
            return process
        return self._spawn(self.sandboxed(command), env=env, cwd=cwd)

    def _spawn(
        self, command: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None
    ) -> subprocess.Popen:
        """Start a process on the display, outside any sandbox (the window manager; or an app, once wrapped)."""
        return self._started(
            command,
            "launch",
            env=self.env(env),
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )

    def _started(self, command: Sequence[str], verb: str, **options: Any) -> subprocess.Popen:
        """``command`` started with ``options``, and kept to be stopped with the display; a clear error if it cannot."""
        try:
            process = subprocess.Popen(list(command), **options)
        except OSError as exc:
            raise SandboxError(f"could not {verb} {command[0]}: {exc}") from exc
        self._processes.append(process)
        return process

    def stop(self) -> None:
        """Stop every program this display started, then the X server; remove its files."""
        for process in reversed(self._processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    process.terminate()
        for process in reversed(self._processes):
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(timeout=3)
        self._processes.clear()
        if self._docker is not None:
            self._docker.stop()
            self._docker = None
        if self._claimed is not None:
            release_display(self._claimed)
            self._claimed = None
        self.session_bus = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        self.started = False

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.poll() is None]

    def __enter__(self) -> VirtualDisplay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        if getattr(self, "_processes", None):
            self.stop()
