"""The sandbox kernel, run as a plain subprocess: notebook semantics over JSON lines."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

KERNEL = Path(__file__).resolve().parent.parent / "sandboxes" / "kernel.py"


class KernelProcess:
    def __init__(self, data_dir: Path) -> None:
        env = {**os.environ, "HARMONY_KERNEL_DATA": str(data_dir)}
        self.proc = subprocess.Popen([sys.executable, "-u", str(KERNEL)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
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


@pytest.fixture
def kernel(tmp_path):
    k = KernelProcess(tmp_path)
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
    assert 'File "<cell>", line 2, in f' in reply["error"]["traceback"]
    assert "kernel.py" not in reply["error"]["traceback"]
    assert kernel.run("exit(3)")["error"]["ename"] == "SystemExit"
    assert kernel.run("1 + 1")["result"] == "2"
    assert kernel.run("def (")["error"]["ename"] == "SyntaxError"


def test_fd_level_output_is_captured_without_corrupting_the_protocol(kernel):
    reply = kernel.run("import os, subprocess, sys\nos.write(1, b'raw\\n')\nsubprocess.run(['echo', 'child'])\nprint('err', file=sys.stderr)")
    assert "raw" in reply["stdout"] and "child" in reply["stdout"] and reply["stderr"] == "err\n"


def test_sigint_interrupts_an_endless_loop_and_the_next_call_works(kernel):
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
    assert reply["files"] == [str(tmp_path / "result.csv")]


def test_bad_requests_get_protocol_errors(kernel):
    kernel.proc.stdin.write("not json\n")
    kernel.proc.stdin.flush()
    assert kernel.receive()["status"] == "protocol_error"
    kernel.send(op="dance")
    assert "unknown op" in kernel.receive()["error"]["evalue"]
    kernel.send(op="ping")
    assert kernel.receive()["pid"] == kernel.proc.pid


def test_matplotlib_figures_are_saved(kernel, tmp_path):
    pytest.importorskip("matplotlib")
    reply = kernel.run("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])")
    assert reply["images"] == [str(tmp_path / "figure-1.png")]
    assert (tmp_path / "figure-1.png").read_bytes()[:4] == b"\x89PNG"


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


def test_the_kernel_runs_from_its_source_text(tmp_path):
    env = {**os.environ, "HARMONY_KERNEL_DATA": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", KERNEL.read_text()], input='{"id": "1", "code": "1/0"}\n', capture_output=True,
                          text=True, env=env, timeout=20)
    reply = json.loads(proc.stdout)
    assert reply["error"]["ename"] == "ZeroDivisionError" and "<string>" not in reply["error"]["traceback"]
