"""scripts/setup.sh's choices: where torch comes from without a GPU, and which Debian mirror the offline image uses.

``setup.sh --plan`` prints both and stops. The CPU index is stood in for by a
local server (the machine here reaches PyPI only); the closed port is the
"index does not answer" case, as it is here for PyTorch's real index.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import ROOT


def _plan(index: str) -> str:
    env = {**os.environ, "HARMONY_AGENT_TORCH_INDEX": index}
    proc = subprocess.run(
        ["bash", "scripts/setup.sh", "--plan"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_torch_comes_from_the_cpu_index_when_it_answers_else_the_default():
    asked: list[str] = []

    class Index(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            asked.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<a href='torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl'>torch</a>")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
        assert f"torch: PyTorch's CPU index {index}" in _plan(index)
        assert asked == ["/whl/cpu/torch/"]
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/whl/cpu"
    assert f"torch: the default index ({closed} does not answer)" in _plan(closed)


def test_the_debian_mirror_is_the_one_apt_uses():
    if shutil.which("apt-get") is None:
        pytest.skip("no apt here")
    mirror = _plan("http://127.0.0.1:9/").split("debian mirror: ", 1)[1].strip()
    targets = subprocess.run(
        ["apt-get", "indextargets", "--format", "$(REPO_URI)", "Created-By: Packages"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    assert mirror in targets and "security" not in mirror
    sources = " ".join(
        p.read_text()
        for p in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
        if p.is_file()
    )
    assert mirror.rstrip("/") in sources
