"""DockerSandbox: one locked-down container per session, with a long-lived kernel inside.

The container's PID 1 is the kernel file in ``init`` mode (it reaps zombies
and kills everything else on SIGUSR1); the kernel itself is started with
``docker exec`` and spoken to over the exec stream, so a call costs a round
trip on a socket rather than a container start. Containers carry an owner
label (host, pid, process start time) so that the next start on this host
removes those a killed run left behind.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import tarfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

from harmony_agent.sandboxes import outbox, watchdog
from harmony_agent.sandboxes._owner import owner_is_gone, owner_tag
from harmony_agent.sandboxes.base import (
    DATA_DIR,
    DataFile,
    KernelMode,
    Limits,
    Sandbox,
    SandboxError,
    blocking,
    session_uid,
)
from harmony_agent.sandboxes.channel import KernelChannel, describe_exit
from harmony_agent.sandboxes.images import DEFAULT_IMAGE
from harmony_agent.sandboxes.kernel import KERNEL_SOURCE

SANDBOX_LABEL = "org.harmony-agent.sandbox"
OWNER_LABEL = "org.harmony-agent.owner"
KERNEL_ENV = {
    "HOME": "/tmp",
    "MPLBACKEND": "Agg",
    "MPLCONFIGDIR": "/tmp/.matplotlib",
    "PYTHONUNBUFFERED": "1",
    "HARMONY_KERNEL_DATA": DATA_DIR,
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
}

#: Runs in the container (standard library only): writes a tar of the regular, visible files of the data folder
#: (argv[1]), or of the one file argv[2] names, to stdout; links, devices and hidden names are left out.
#: Files the host already has (same size and mtime, argv[3] as JSON) are left out, and a file over argv[4] bytes
#: is sent as an empty member whose pax header HARMONY.size says its size, so the host can say it stayed.
ARCHIVE_SCRIPT = """
import io, json, os, stat, sys, tarfile
root, only, known, cap = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
def add(archive, name):
    path = os.path.join(root, name)
    try:
        info = os.lstat(path)
    except OSError:
        return
    if not stat.S_ISREG(info.st_mode) or known.get(name) == [info.st_size, int(info.st_mtime)]:
        return
    if info.st_size > cap:
        member = tarfile.TarInfo(name)
        member.mtime, member.pax_headers = int(info.st_mtime), {"HARMONY.size": str(info.st_size)}
        archive.addfile(member, io.BytesIO())
        return
    archive.add(path, arcname=name, recursive=False)
with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as archive:
    if only:
        add(archive, only)
    else:
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith("."):
                    add(archive, os.path.relpath(os.path.join(folder, name), root))
"""

_live: dict[str, Any] = {}  # container id -> docker client, for removal at interpreter exit


def _member_size(member: tarfile.TarInfo) -> int:
    """A member's size, or the size the archiving program said a file left out had (HARMONY.size)."""
    said = member.pax_headers.get("HARMONY.size", "")
    return int(said) if said.isdigit() else member.size


def reap_orphans(client) -> list[str]:
    """Remove sandbox containers whose owning process on this host has died; returns their ids."""
    removed = []
    # Other sandboxes are removed all the time (sessions closing, other processes reaping): a container
    # listed but gone by the time it is inspected is skipped, never an error for the sandbox starting now.
    for container in client.containers.list(all=True, filters={"label": SANDBOX_LABEL}, ignore_removed=True):
        if owner_is_gone(container.labels.get(OWNER_LABEL, "")):
            try:
                container.remove(force=True)
                removed.append(container.id)
            except Exception:  # already gone, or being removed by its owner
                pass
    return removed


def _remove_live_containers() -> None:
    for container_id, client in list(_live.items()):
        try:
            client.api.remove_container(container_id, force=True)
        except Exception:
            pass
        _live.pop(container_id, None)


atexit.register(_remove_live_containers)


def docker_client(timeout: int = 10):
    """A client for the engine in the environment (DOCKER_HOST or the default socket), or a clear SandboxError."""
    try:
        import docker
    except ImportError as exc:
        raise SandboxError("the docker SDK is not installed: pip install 'harmony-agent[docker]'") from exc
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:
        raise SandboxError(f"no Docker engine answers ({exc}); start one (e.g. dockerd) or use LocalSandbox") from exc
    return client


async def _exec_lines(reader: asyncio.StreamReader, stderr_tail: bytearray) -> AsyncIterator[bytes]:
    """Lines of an exec's stdout, from Docker's multiplexed stream (8-byte frame headers, no TTY)."""
    pending = bytearray()
    while True:
        header = await reader.readexactly(8)
        stream, size = header[0], int.from_bytes(header[4:8], "big")
        payload = await reader.readexactly(size)
        if stream != 1:
            stderr_tail.extend(payload)
            del stderr_tail[:-4096]
            continue
        pending.extend(payload)
        while (end := pending.find(b"\n")) >= 0:
            yield bytes(pending[:end])
            del pending[: end + 1]


class DockerSandbox(Sandbox):
    """A Python session in a container: no network, limited memory, processes and CPU, read-only root, a user of its own."""

    kind = "docker"

    def __init__(
        self,
        image: str = DEFAULT_IMAGE,
        *,
        limits: Limits | None = None,
        runtime: str | None = None,
        timeout: float = 120.0,
        max_output: int = 20_000,
        interrupt_grace: float = 3.0,
        kernel: KernelMode = "auto",
    ) -> None:
        super().__init__(timeout=timeout, max_output=max_output, interrupt_grace=interrupt_grace, kernel=kernel)
        self.image = image
        self.limits = limits or Limits()
        self.runtime = runtime
        self.client: Any = None
        self.container: Any = None
        self._exec_id: str | None = None
        self._exec_socket: Any = None
        self._stderr_tail = bytearray()
        self._oom_seen: int | None = None
        self.uid = session_uid()  # the session's own user: its own process budget, unable to touch other sessions

    @property
    def _user(self) -> str:
        return f"{self.uid}:{self.uid}"

    def describe(self) -> str:
        name = self.container.name if self.container is not None else "not started"
        limits = self.limits
        return (
            f"Docker container {name} from {self.image}: no network, {limits.memory_mb} MB memory, "
            f"{limits.processes} processes, {limits.cpus:g} CPUs, read-only root, uid {self.uid} (its own)"
        )

    async def _boot(self) -> None:
        self.client = await asyncio.to_thread(docker_client)
        await asyncio.to_thread(reap_orphans, self.client)
        self.container = await asyncio.to_thread(self._create_container)
        _live[self.container.id] = self.client
        watchdog.hold("container", self.container.id)

    def _create_container(self):
        from docker.errors import APIError, ImageNotFound

        try:
            self.client.images.get(self.image)
        except ImageNotFound:
            raise SandboxError(
                f"the sandbox image {self.image} is missing: build it with `harmony-agent sandbox build` "
                "(or `harmony-agent sandbox build --offline` without registry access)"
            ) from None
        limits = self.limits
        try:
            return self.client.containers.run(
                self.image,
                ["python3", "-c", KERNEL_SOURCE, "init"],
                detach=True,
                network_mode="none",
                read_only=True,
                user=self._user,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                mem_limit=f"{limits.memory_mb}m",
                memswap_limit=f"{limits.memory_mb}m",
                pids_limit=limits.processes,
                nano_cpus=int(limits.cpus * 1e9),
                runtime=self.runtime,
                hostname="sandbox",
                working_dir=DATA_DIR,
                shm_size=f"{limits.shm_mb}m",
                tmpfs={
                    DATA_DIR: f"size={limits.data_mb}m,uid={self.uid},gid={self.uid},mode=0700",
                    "/tmp": f"size={limits.tmp_mb}m,mode=1777",
                },
                environment=KERNEL_ENV,
                labels={SANDBOX_LABEL: "python", OWNER_LABEL: owner_tag()},
            )
        except APIError as exc:
            raise SandboxError(
                f"could not start a sandbox container from {self.image}: {exc.explanation or exc}"
            ) from exc

    async def _spawn_kernel(self) -> KernelChannel:
        api = self.client.api
        try:
            created = await asyncio.to_thread(
                api.exec_create,
                self.container.id,
                ["python3", "-c", KERNEL_SOURCE],
                stdin=True,
                stdout=True,
                stderr=True,
                user=self._user,
                workdir=DATA_DIR,
                environment={**KERNEL_ENV, **self.kernel_environment},
            )
            self._exec_socket = await asyncio.to_thread(api.exec_start, created["Id"], socket=True)
        except Exception as exc:
            raise SandboxError(f"could not start the kernel in container {self.container.name}: {exc}") from exc
        self._exec_id = created["Id"]
        raw = getattr(self._exec_socket, "_sock", self._exec_socket)
        raw.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=raw, limit=2**20)
        self._stderr_tail = bytearray()

        async def write(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        return KernelChannel(_exec_lines(reader, self._stderr_tail), write)

    async def _kill_all(self) -> None:
        if await self._container_stopped():  # nothing can run in it again: a fresh one takes its place
            await self._replace_container()
            return
        try:
            await asyncio.to_thread(self.container.kill, signal="SIGUSR1")
        except Exception as exc:
            raise SandboxError(f"could not reset container {self.container.name}: {exc}") from exc

    async def _container_stopped(self) -> str | None:
        """Why the container can no longer run a kernel (stopped, removed), or None while it runs."""
        from docker.errors import NotFound

        try:
            await asyncio.to_thread(self.container.reload)
        except NotFound:
            return "the sandbox container was removed"
        state = self.container.attrs.get("State", {})
        if self.container.status == "running":
            return None
        return f"the sandbox container stopped ({self.container.status}, exit code {state.get('ExitCode')})"

    async def _replace_container(self) -> None:
        old = self.container
        with contextlib.suppress(Exception):
            await blocking(old.remove, force=True)
        _live.pop(old.id, None)
        watchdog.released("container", old.id)
        self.container = await asyncio.to_thread(self._create_container)
        _live[self.container.id] = self.client
        watchdog.hold("container", self.container.id)
        self._replaced = True

    async def _death_reason(self) -> str:
        if self._exec_id is None:
            return "the kernel never started"
        stopped = await self._container_stopped()
        if stopped:
            return stopped
        code = None
        for _ in range(20):
            info = await asyncio.to_thread(self.client.api.exec_inspect, self._exec_id)
            code = info.get("ExitCode")
            if not info.get("Running"):
                break
            await asyncio.sleep(0.05)
        before, now = self._oom_seen, await asyncio.to_thread(self._oom_kills)
        oom_checked = before is not None and now is not None and now == before  # the cgroup killed nothing since
        return describe_exit(
            code,
            self._stderr_tail.decode("utf-8", "replace"),
            memory_mb=None if oom_checked else self.limits.memory_mb,
            oom_checked=oom_checked,
        )

    def _oom_kills(self) -> int | None:
        """The container's memory cgroup kill count, read from inside it (the engine may be on another host)."""
        try:
            result = self.container.exec_run(
                ["sh", "-c", "cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control"],
                user=self._user,
            )
        except Exception:
            return None
        for line in result.output.decode(errors="replace").splitlines():
            if line.startswith("oom_kill ") and line.split()[1].isdigit():
                return int(line.split()[1])
        return None

    def _archive(
        self, relative: str = "", known: dict[str, list] | None = None, max_bytes: int = outbox.MAX_FILE_BYTES
    ) -> Iterator[bytes]:
        """A tar stream of the data folder (or one file in it), written by a process inside the container.

        Docker's own archive API cannot see a tmpfs mount such as the data folder, so a short program runs in
        the container as the session's user (``python3 -I``: no user site or environment can change it); it can
        show only what the container holds, and the host trusts none of its stream (see :mod:`outbox`).
        """
        api = self.client.api
        listed = json.dumps(known or {})
        if len(listed) > 100_000:  # an argument's limit is 128 KiB: past it, send everything again
            listed = "{}"
        created = api.exec_create(
            self.container.id,
            ["python3", "-I", "-c", ARCHIVE_SCRIPT, DATA_DIR, relative, listed, str(max_bytes)],
            stdout=True,
            stderr=False,
            user=self._user,
        )
        return api.exec_start(created["Id"], stream=True)

    def _read_file(self, relative: str, max_bytes: int) -> tuple[bytes, int, float]:
        """One file, archived inside the container; a link or anything but a regular file is refused."""
        path = f"{DATA_DIR}/{relative}"
        chunks = self._archive(relative, max_bytes=max_bytes)
        try:
            for member, archive in outbox.tar_members(chunks):
                if member.name != relative or not member.isreg():
                    break
                size = _member_size(member)
                if size > max_bytes:
                    raise outbox.Refused(f"{path} is {size:,} bytes, over the {max_bytes:,}-byte cap")
                extracted = archive.extractfile(member)
                assert extracted is not None
                return extracted.read(), member.size, float(member.mtime)
        except tarfile.TarError as exc:
            raise outbox.Refused(f"{path} could not be read from the container: {exc}") from None
        finally:
            with contextlib.suppress(Exception):
                chunks.close()  # type: ignore[attr-defined]  # stubs say Iterator; it is a generator
        raise outbox.Refused(f"{path} is missing or not a regular file (links are not followed)")

    def _data_files(self, known: dict[str, tuple[int, float]], max_bytes: int) -> Iterator[DataFile]:
        """The data folder as one archive stream from the container: regular files only, read as they pass;
        those the host has are not sent again, nor the bytes of one over ``max_bytes``."""
        chunks = self._archive("", {name: [size, int(mtime)] for name, (size, mtime) in known.items()}, max_bytes)
        try:
            for member, archive in outbox.tar_members(chunks):
                if not member.isreg():
                    continue

                def read(member=member, archive=archive) -> bytes:
                    extracted = archive.extractfile(member)
                    return extracted.read() if extracted is not None else b""

                yield member.name, _member_size(member), float(member.mtime), read
        finally:
            with contextlib.suppress(Exception):
                chunks.close()  # type: ignore[attr-defined]  # stubs say Iterator; it is a generator

    async def _shutdown(self) -> None:
        container, self.container = self.container, None
        if container is None:
            return
        self._exec_socket = None
        try:
            await blocking(container.remove, force=True)
        except Exception as exc:
            if "No such container" not in str(exc) and "is already in progress" not in str(exc):
                # left listed: the exit handler and the watchdog try again
                raise SandboxError(f"could not remove container {container.name}: {exc}") from exc
        _live.pop(container.id, None)
        watchdog.released("container", container.id)
