"""Sandbox behaviour, on real Docker and real bubblewrap: state, limits, isolation, cleanup.

Each behaviour runs on both kernels: IPython's cells (what the sandbox runs
where IPython is installed, forced here so a sandbox without it fails) and the
standard-library fallback.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harmony_agent.sandboxes import DockerSandbox, LocalSandbox, SandboxError
from helpers import ROOT
from helpers.available import KINDS, make, require

KERNELS = ["ipython", "standard"]


@pytest.fixture(params=[(kind, kernel) for kind in KINDS for kernel in KERNELS], ids="-".join)
async def sandbox(request):
    kind, kernel = request.param
    box = make(kind, timeout=30, interrupt_grace=2.0, kernel=kernel)
    await box.start()
    assert box.notebook == (kernel == "ipython"), box.kernel_name
    yield box
    await box.close()


async def count_processes(box) -> int:
    reply = await box.execute("import os\nlen([p for p in os.listdir('/proc') if p.isdigit()])")
    assert reply.status == "ok", reply
    return int(reply.result)


async def test_state_last_expression_and_tracebacks(sandbox):
    assert (await sandbox.execute("x = 20\ndef double(v):\n    return v * 2")).result is None
    shown = await sandbox.execute("print('hi')\ndouble(x) + 2")
    assert (shown.status, shown.stdout, shown.result) == ("ok", "hi\n", "42")
    failed = await sandbox.execute("def f():\n    return 1 / 0\nf()")
    assert failed.status == "error" and failed.error.ename == "ZeroDivisionError"
    where = ", line 2, in f" if sandbox.notebook else 'File "<cell>", line 2, in f'
    assert where in failed.error.traceback and "harmony_kernel" not in failed.error.traceback
    assert (await sandbox.execute("x")).result == "20"  # an exception loses nothing


async def test_a_timeout_interrupts_and_keeps_state(sandbox):
    await sandbox.execute("kept = 'yes'")
    started = time.monotonic()
    slow = await sandbox.execute("import time\ntime.sleep(60)", timeout=1)
    assert slow.status == "timeout" and not slow.state_lost
    assert time.monotonic() - started < 10
    assert "timed out after 1 s" in slow.notes[-1]
    assert (await sandbox.execute("kept")).result == "'yes'"


async def test_an_endless_loop_is_stopped(sandbox):
    spin = await sandbox.execute("while True: pass", timeout=1)
    assert spin.status == "timeout"
    assert (await sandbox.execute("1 + 1")).result == "2"


async def test_code_that_ignores_the_interrupt_is_stopped_by_a_restart(sandbox):
    await sandbox.execute("open('keep.txt', 'w').write('kept'); lost = 1")
    stubborn = await sandbox.execute(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass", timeout=1
    )
    assert stubborn.status == "timeout" and stubborn.state_lost
    assert "restarted" in stubborn.notes[-1]
    assert (await sandbox.execute("'lost' in globals()")).result == "False"
    assert (await sandbox.execute("open('keep.txt').read()")).result == "'kept'"


async def test_a_fork_bomb_is_contained(sandbox):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    result = await sandbox.execute(bomb, timeout=3)
    assert result.status == "timeout"
    deadline = time.monotonic() + 10  # PID 1 reaps the killed copies' zombies a moment later
    while (remaining := await count_processes(sandbox)) > 4 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert remaining <= 4  # the bomb's copies are gone, not just throttled
    assert (await sandbox.execute("'alive'")).result == "'alive'"


async def test_an_allocation_past_the_memory_limit_is_reported_and_the_next_call_works(sandbox):
    result = await sandbox.execute("hog = bytearray(3 * 1024 ** 3)\nhog[::4096] = b'x' * len(hog[::4096])")
    assert result.status in ("error", "crashed")
    described = f"{result.error.ename} {result.error.evalue} {' '.join(result.notes)}"
    assert "MemoryError" in described or "memory limit" in described
    assert (await sandbox.execute("6 * 7")).result == "42"


@pytest.fixture
def host_server():
    """An HTTP server on the host's 127.0.0.1 that counts the requests it gets."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"reached")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], hits
    server.shutdown()


async def test_the_network_is_unreachable(sandbox, host_server):
    port, hits = host_server
    import urllib.request

    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/host", timeout=5).read() == b"reached"  # the server works
    probe = await sandbox.execute(
        f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/sandbox', timeout=3).read()"
    )
    assert probe.status == "error" and probe.error.ename in (
        "URLError",
        "ConnectionRefusedError",
        "OSError",
        "TimeoutError",
    )
    assert hits == ["/host"]


async def test_writes_outside_the_data_folder_are_refused(sandbox):
    for path in ("/etc/harmony-probe", "/usr/harmony-probe", "/harmony-probe", "/root/harmony-probe"):
        result = await sandbox.execute(f"open({path!r}, 'w').write('x')")
        assert result.status == "error" and result.error.ename in ("OSError", "PermissionError", "FileNotFoundError"), (
            path
        )
        assert not os.path.exists(path)
    assert (await sandbox.execute("open('/mnt/data/ok.txt', 'w').write('ok')")).result == "2"
    marker = f"harmony-private-{os.getpid()}-{id(sandbox)}"
    assert (await sandbox.execute(f"open('/tmp/{marker}', 'w').write('x')")).status == "ok"
    assert not (Path(tempfile.gettempdir()) / marker).exists()  # the sandbox's /tmp is its own


async def test_huge_output_is_truncated_keeping_head_and_tail(sandbox):
    result = await sandbox.execute("print('START'); print('x' * 50_000_000); print('END')")
    assert result.stdout.startswith("START") and result.stdout.rstrip().endswith("END")
    assert "cut" in result.stdout and len(result.stdout) < sandbox.max_output + 200


async def test_files_upload_and_download(sandbox, tmp_path):
    local = tmp_path / "table.csv"
    local.write_text("a,b\n1,2\n")
    where = await sandbox.upload(local, "inputs/table.csv")
    assert where == "/mnt/data/inputs/table.csv"
    made = await sandbox.execute(
        "import csv\nrows = list(csv.reader(open('inputs/table.csv')))\nopen('out.bin', 'wb').write(bytes(range(256)))\nrows"
    )
    assert made.result == "[['a', 'b'], ['1', '2']]" and made.files == ("/mnt/data/out.bin",)
    assert await sandbox.download("out.bin") == bytes(range(256))
    with pytest.raises(SandboxError, match="FileNotFoundError"):
        await sandbox.download("missing.txt")


async def test_matplotlib_figures_are_saved_as_png(sandbox):
    result = await sandbox.execute("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('demo')")
    assert result.images == ("/mnt/data/figure-1.png",)
    assert (await sandbox.download("figure-1.png"))[:4] == b"\x89PNG"


@pytest.mark.parametrize("kind", KINDS)
async def test_two_sessions_are_isolated(kind):
    async with make(kind) as first, make(kind) as second:
        await first.execute("secret = 1\nopen('mine.txt', 'w').write('first')")
        assert (await second.execute("'secret' in globals()")).result == "False"
        assert (await second.execute("import os\nos.path.exists('/mnt/data/mine.txt')")).result == "False"


async def test_restart_clears_variables_and_keeps_files(sandbox):
    await sandbox.execute("v = 1\nopen('f.txt', 'w').write('f')")
    await sandbox.restart()
    assert (await sandbox.execute("'v' in globals(), open('f.txt').read()")).result == "(False, 'f')"


async def test_a_closed_sandbox_says_so(sandbox):
    await sandbox.close()
    with pytest.raises(SandboxError, match="closed"):
        await sandbox.execute("1")


async def test_no_container_is_left_after_close():
    require("docker")
    box = DockerSandbox()
    await box.start()
    container = box.container
    await box.close()
    from docker.errors import NotFound

    with pytest.raises(NotFound):
        box.client.containers.get(container.id)


OWNER_SCRIPT = """
import asyncio, sys
sys.path.insert(0, {root!r})
from harmony_agent.sandboxes import DockerSandbox, LocalSandbox
async def main():
    box = DockerSandbox() if sys.argv[1] == "docker" else LocalSandbox()
    await box.start()
    print(box.container.id if sys.argv[1] == "docker" else box.data_dir, flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
"""


def kill_everything(owner: subprocess.Popen) -> None:
    """SIGKILL the owner and its watchdog (which would otherwise remove what the owner held): only the next
    start's reaping is left to tidy up."""
    children = Path(f"/proc/{owner.pid}/task/{owner.pid}/children").read_text().split()
    for child in children:
        try:
            if b"held = {}" in Path(f"/proc/{child}/cmdline").read_bytes():
                os.kill(int(child), signal.SIGKILL)
        except OSError:
            pass
    owner.send_signal(signal.SIGKILL)
    owner.wait()


def start_owner(kind: str, tmp_path: Path) -> tuple[subprocess.Popen, str]:
    script = tmp_path / "owner.py"
    script.write_text(OWNER_SCRIPT.format(root=str(ROOT)))
    owner = subprocess.Popen([sys.executable, str(script), kind], stdout=subprocess.PIPE, text=True)
    line = owner.stdout.readline().strip()
    assert line, "the owner process did not start its sandbox"
    return owner, line


async def test_a_container_orphaned_by_sigkill_is_reaped_at_the_next_start(tmp_path):
    require("docker")
    owner, container_id = start_owner("docker", tmp_path)
    kill_everything(owner)
    from docker.errors import NotFound

    from harmony_agent.sandboxes.docker import docker_client

    assert docker_client().containers.get(container_id).status == "running"  # orphaned: nobody removed it
    async with DockerSandbox() as box:
        with pytest.raises(NotFound):
            box.client.containers.get(container_id)


async def test_bubblewrap_dies_with_its_owner_and_its_folder_is_reaped(tmp_path):
    require("bubblewrap")
    owner, data_dir = start_owner("bubblewrap", tmp_path)
    kill_everything(owner)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        survivors = subprocess.run(["pgrep", "-f", data_dir], capture_output=True, text=True).stdout.split()
        if not survivors:
            break
        await asyncio.sleep(0.1)
    assert not survivors, "sandbox processes outlived their owner"
    assert Path(data_dir).exists()  # a SIGKILLed owner cannot tidy up...
    async with LocalSandbox():
        assert not Path(data_dir).exists()  # ...so the next start does


async def test_a_dead_kernel_is_reported_and_restarted(sandbox):
    await sandbox.execute("open('survives.txt', 'w').write('yes')")
    died = await sandbox.execute("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert died.status == "crashed" and died.state_lost and "SIGKILL" in died.error.evalue
    assert "most likely" not in died.error.evalue  # it killed itself: the memory limit is not to blame
    if sandbox.kind == "docker":  # the container's memory cgroup was asked
        assert "not for memory" in died.error.evalue
    assert "restarted" in died.notes[0]
    assert (await sandbox.execute("open('survives.txt').read()")).result == "'yes'"


def test_setup_can_tell_an_image_built_before_ipython():
    require("docker")
    import io
    import tarfile

    from harmony_agent.sandboxes.docker import docker_client
    from harmony_agent.sandboxes.images import DEFAULT_IMAGE, image_outdated

    client = docker_client()
    assert image_outdated(client) is None  # what set-up built is current
    assert "is missing" in image_outdated(client, "harmony-agent/no-such-image:0")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:  # an image with no version label, as older builds made
        info = tarfile.TarInfo("marker")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    tag = f"harmony-agent/old-python:{os.getpid()}"
    client.api.import_image_from_data(archive.getvalue(), repository=tag.split(":")[0], tag=tag.split(":")[1])
    try:
        assert "unlabelled" in image_outdated(client, tag) and "IPython" in image_outdated(client, tag)
    finally:
        client.images.remove(tag, force=True)
    assert client.images.get(DEFAULT_IMAGE).labels["org.harmony-agent.image-version"]


# -- sandboxes that keep working and keep to themselves ----------------------------------------

PTRACE_PID_1 = """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
attached = libc.ptrace(16, 1, 0, 0) == 0  # PTRACE_ATTACH
refused = ctypes.get_errno()
if attached:  # leave PID 1 as it was
    os.waitpid(1, 0x40000000)
    libc.ptrace(17, 1, 0, 0)
attached, refused"""


async def test_code_cannot_ptrace_the_sandboxs_pid_1(sandbox):
    import errno

    assert (await sandbox.execute(PTRACE_PID_1)).result == f"(False, {errno.EPERM})"


async def test_signals_from_user_code_to_the_containers_init_are_ignored():
    require("docker")
    async with DockerSandbox(timeout=30) as box:
        await box.execute("kept = 'yes'")
        for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGKILL"):
            sent = await box.execute(f"import os, signal, time\nos.kill(1, signal.{name})\ntime.sleep(0.3)\nkept")
            assert (sent.status, sent.result, sent.state_lost) == ("ok", "'yes'", False), (name, sent)
        box.container.reload()
        assert box.container.status == "running"


async def test_killing_every_python_in_the_container_costs_the_kernel_only():
    require("docker")
    async with DockerSandbox(timeout=30) as box:
        await box.execute("open('kept.txt', 'w').write('kept')")
        pkill = (
            "import os, signal\nfor pid in [int(p) for p in os.listdir('/proc') if p.isdigit()]:\n"
            "    try:\n        os.kill(pid, signal.SIGTERM)\n    except OSError:\n        pass"
        )
        died = await box.execute(pkill)  # what `pkill python3` does, the kernel's own process included
        assert died.status == "crashed" and died.state_lost and "are kept" in died.notes[0]
        assert (await box.execute("open('kept.txt').read()")).result == "'kept'"


async def test_a_stopped_container_is_replaced_and_the_model_told_what_was_lost():
    require("docker")
    async with DockerSandbox(timeout=30) as box:
        await box.execute("lost = 1\nopen('gone.txt', 'w').write('x')")
        first = box.container.id
        box.container.kill()  # the engine stops it (docker stop, a daemon restart, its init killed)
        after = await box.execute("'lost' in globals(), __import__('os').path.exists('gone.txt')")
        assert after.state_lost and any(
            "replaced by a fresh one" in note and "files" in note for note in after.notes
        ), after
        if after.status == "ok":  # the stop was noticed before the call, which then ran in the new container
            assert after.result == "(False, False)"
        assert (await box.execute("6 * 7")).result == "42"
        assert box.container.id != first
        from docker.errors import NotFound

        with pytest.raises(NotFound):
            box.client.containers.get(first)


async def test_dev_shm_is_bounded(sandbox):
    fill = (
        "written = 0\ntry:\n    with open('/dev/shm/fill', 'wb') as f:\n        for _ in range(32):\n"
        "            f.write(b'x' * (8 << 20)); f.flush(); written += 8\nexcept OSError as exc:\n    error = exc.errno\n"
        "import os\nos.remove('/dev/shm/fill')\nwritten"
    )
    written = int((await sandbox.execute(fill)).result)
    assert written <= 64  # megabytes: the limit, not the 256 MB the cell asked for
    assert (await sandbox.execute("error")).result == "28"  # ENOSPC


async def test_a_cell_writing_thousands_of_files_gets_a_count_not_a_page_of_names(sandbox):
    many = await sandbox.execute(
        "import os\nos.makedirs('many', exist_ok=True)\nfor i in range(2000):\n"
        "    open(f'many/{i:04}.txt', 'w').close()"
    )
    assert len(many.files) == 50 and many.files_omitted == 1950
    from harmony_agent.tools.python import render_execution

    assert render_execution(many).output.endswith("/mnt/data/many/0049.txt and 1,950 more]")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_fork_bomb_in_one_session_leaves_the_others_working(kind):
    async with make(kind, timeout=60) as bombed, make(kind, timeout=60) as neighbour:
        hold = (
            "import os, time\nchildren = 0\ntry:\n    for _ in range(400):\n        if os.fork() == 0:\n"
            "            time.sleep(120)\n            os._exit(0)\n        children += 1\nexcept OSError:\n    pass\nchildren"
        )
        held = await bombed.execute(hold)  # every process its budget allows, left running
        assert held.status == "ok" and 0 < int(held.result) < 400, held
        started = await neighbour.execute("import subprocess\nsubprocess.run(['true']).returncode")
        assert (started.status, started.result) == ("ok", "0"), started


async def test_sessions_run_as_users_of_their_own():
    require("bubblewrap")
    async with LocalSandbox() as first, LocalSandbox() as second:
        ids = [(await box.execute("import os; os.getuid()")).result for box in (first, second)]
        if os.geteuid() == 0:
            assert ids[0] != ids[1] and "0" not in ids and "65534" not in ids
