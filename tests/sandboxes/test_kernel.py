"""The sandbox kernel, run as a plain subprocess: notebook semantics over JSON lines.

Every test runs on both cell runners: IPython's (with the system Python, which
set-up gives IPython, as the bubblewrap sandbox does) and the standard-library
fallback (with this interpreter).
"""

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harmony_agent.sandboxes.kernel import KERNEL_SOURCE

SYSTEM_PYTHON = "/usr/bin/python3"


@functools.cache
def system_python_has_ipython() -> bool:
    return subprocess.run([SYSTEM_PYTHON, "-c", "import IPython"], capture_output=True).returncode == 0


def kernel_python(mode: str) -> str:
    """The interpreter for a kernel mode: the system's (with IPython) or this one, forced to the fallback."""
    if mode == "standard":
        return sys.executable
    if not system_python_has_ipython():
        message = f"{SYSTEM_PYTHON} has no IPython (apt-get install python3-ipython; scripts/setup.sh does)"
        if "bubblewrap" in os.environ.get("HARMONY_AGENT_REQUIRE", ""):
            pytest.fail(message)
        pytest.skip(message)
    return SYSTEM_PYTHON


class KernelProcess:
    def __init__(self, data_dir: Path, mode: str = "standard") -> None:
        env = {
            **os.environ,
            "HARMONY_KERNEL_DATA": str(data_dir),
            "HARMONY_KERNEL_MODE": mode,
            "HOME": str(data_dir.parent),
        }
        self.mode = mode
        self.proc = subprocess.Popen(
            [kernel_python(mode), "-u", "-c", KERNEL_SOURCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.count = 0

    def send(self, op: str = "execute", **fields) -> None:
        self.count += 1
        self.proc.stdin.write(json.dumps({"id": str(self.count), "op": op, **fields}) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float = 20) -> dict:
        box = {}
        reader = threading.Thread(target=lambda: box.setdefault("line", self.proc.stdout.readline()))
        reader.start()
        reader.join(timeout)
        assert "line" in box, "the kernel did not answer in time"
        return json.loads(box["line"])

    def run(self, code: str, **fields) -> dict:
        self.send(code=code, **fields)
        return self.receive()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(params=["ipython", "standard"])
def kernel(request, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    k = KernelProcess(data, request.param)
    yield k
    k.close()


def test_state_persists_and_last_expression_is_shown(kernel):
    assert kernel.run("x = 20")["result"] is None
    reply = kernel.run("print('hi'); x + 22")
    assert reply["status"] == "ok" and reply["stdout"] == "hi\n" and reply["result"] == "42"
    assert kernel.run("_ * 2")["result"] == "84"


def test_exceptions_come_back_as_tracebacks_and_the_kernel_survives(kernel):
    reply = kernel.run("def f():\n    return 1 / 0\nf()")
    assert reply["status"] == "error" and reply["error"]["ename"] == "ZeroDivisionError"
    where = "Cell In [1], line 2, in f()" if kernel.mode == "ipython" else 'File "<cell>", line 2, in f'
    assert where in reply["error"]["traceback"]
    assert "harmony_kernel" not in reply["error"]["traceback"]
    assert kernel.run("exit(3)")["error"]["ename"] == "SystemExit"
    assert kernel.run("1 + 1")["result"] == "2"
    assert kernel.run("def (")["error"]["ename"] == "SyntaxError"


def test_fd_level_output_is_captured_without_corrupting_the_protocol(kernel):
    reply = kernel.run(
        "import os, subprocess, sys\nos.write(1, b'raw\\n')\nsubprocess.run(['echo', 'child'])\nprint('err', file=sys.stderr)"
    )
    assert "raw" in reply["stdout"] and "child" in reply["stdout"] and reply["stderr"] == "err\n"


def test_sigint_interrupts_an_endless_loop_and_the_next_call_works(kernel):
    kernel.send(op="ping")
    kernel.receive()  # started: SIGINT before the kernel has its handler would end it
    kernel.send(code="while True: pass")
    time.sleep(0.5)
    kernel.proc.send_signal(signal.SIGINT)
    reply = kernel.receive()
    assert reply["status"] == "interrupted"
    assert kernel.run("'alive'")["result"] == "'alive'"


def test_large_output_keeps_head_and_tail(kernel):
    reply = kernel.run("print('START'); print('x' * 50_000_000); print('END')", max_output=2000)
    assert reply["stdout"].startswith("START") and reply["stdout"].rstrip().endswith("END")
    assert "bytes cut" in reply["stdout"] and len(reply["stdout"]) < 3000


def test_files_written_to_the_data_folder_are_reported(kernel, tmp_path):
    reply = kernel.run("open('result.csv', 'w').write('a,b\\n1,2\\n')")
    assert reply["files"] == [str(tmp_path / "data" / "result.csv")]


def test_bad_requests_get_protocol_errors(kernel):
    kernel.proc.stdin.write("not json\n")
    kernel.proc.stdin.flush()
    assert kernel.receive()["status"] == "protocol_error"
    kernel.send(op="dance")
    assert "unknown op" in kernel.receive()["error"]["evalue"]
    kernel.send(op="ping")
    pong = kernel.receive()
    assert pong["pid"] == kernel.proc.pid
    assert pong["kernel"].startswith("IPython ") if kernel.mode == "ipython" else pong["kernel"] == "standard library"


def test_matplotlib_figures_are_saved(kernel, tmp_path):
    pytest.importorskip("matplotlib")
    reply = kernel.run("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])")
    assert reply["images"] == [str(tmp_path / "data" / "figure-1.png")]
    assert (tmp_path / "data" / "figure-1.png").read_bytes()[:4] == b"\x89PNG"


def test_an_interrupt_request_stops_running_code_and_is_ignored_when_idle(kernel):
    kernel.send(op="interrupt")  # idle: no reply, no effect on the next call
    assert kernel.run("import time; time.sleep(0.2); 'slept'")["result"] == "'slept'"
    kernel.send(code="import time\nwhile True: time.sleep(0.01)")
    time.sleep(0.5)
    kernel.send(op="interrupt")
    reply = kernel.receive()
    assert reply["status"] == "interrupted" and reply["id"] == str(kernel.count - 1)
    assert kernel.run("'alive'")["result"] == "'alive'"


def test_upload_and_download_round_trip(kernel, tmp_path):
    import base64

    kernel.send(op="upload", path="in/data.bin", data=base64.b64encode(b"\x00\x01payload").decode())
    assert kernel.receive()["size"] == 9
    assert kernel.run("open('in/data.bin', 'rb').read()")["result"] == repr(b"\x00\x01payload")
    kernel.send(op="download", path="in/data.bin")
    assert base64.b64decode(kernel.receive()["data"]) == b"\x00\x01payload"
    kernel.send(op="download", path="missing.txt")
    assert kernel.receive()["error"]["ename"] == "FileNotFoundError"


def test_a_forked_child_never_answers_requests(kernel):
    reply = kernel.run("import os\npid = os.fork()\n'child' if pid == 0 else os.waitpid(pid, 0)[1]")
    assert reply["result"] == "0"  # only the parent answered, and the child exited cleanly
    assert kernel.run("'next'")["result"] == "'next'"


@pytest.mark.parametrize("mode", ["ipython", "standard"])
def test_the_kernel_runs_from_its_source_text(tmp_path, mode):
    env = {**os.environ, "HARMONY_KERNEL_DATA": str(tmp_path), "HARMONY_KERNEL_MODE": mode, "HOME": str(tmp_path)}
    proc = subprocess.run(
        [kernel_python(mode), "-c", KERNEL_SOURCE],
        input='{"id": "1", "code": "1/0"}\n',
        capture_output=True,
        text=True,
        env=env,
        timeout=20,
    )
    reply = json.loads(proc.stdout)
    assert reply["error"]["ename"] == "ZeroDivisionError" and "<string>" not in reply["error"]["traceback"]
    assert "harmony_kernel" not in reply["error"]["traceback"]


def test_ipython_asked_for_but_missing_fails_with_a_clear_message(tmp_path):
    env = {**os.environ, "HARMONY_KERNEL_DATA": str(tmp_path), "HARMONY_KERNEL_MODE": "ipython"}
    proc = subprocess.run(
        [sys.executable, "-S", "-c", KERNEL_SOURCE],
        input='{"id": "1", "op": "ping"}\n',
        capture_output=True,
        text=True,
        env=env,
        timeout=20,
    )  # -S: no site-packages, so no IPython
    assert proc.returncode == 1 and proc.stdout == ""
    assert "the IPython kernel cannot start: ModuleNotFoundError" in proc.stderr


def test_auto_falls_back_and_says_why_where_ipython_is_missing(tmp_path):
    env = {**os.environ, "HARMONY_KERNEL_DATA": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-S", "-c", KERNEL_SOURCE],
        input='{"id": "1", "op": "ping"}\n{"id": "2", "code": "display(1); 2;"}\n',
        capture_output=True,
        text=True,
        env=env,
        timeout=20,
    )
    pong, reply = (json.loads(line) for line in proc.stdout.splitlines())
    assert (pong["kernel"], pong["fallback_reason"]) == ("standard library", "IPython is not installed")
    assert reply["stdout"] == "1\n" and reply["result"] is None
