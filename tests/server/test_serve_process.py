"""``harmony-agent serve`` as a process: uvicorn runs on the runtime's loop, and signals still stop it.

uvicorn installs its signal handlers only on the main thread, and ``serve`` now runs it on the
runtime's thread (where the sessions run), so the handlers are installed by the main thread around
it. These tests stop a real ``serve`` that has just streamed an answer, as a terminal (Ctrl-C) and
a service manager (SIGTERM) would.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from helpers import ROOT
from helpers.processes import free_port

openai = pytest.importorskip("openai")


@pytest.mark.slow  # starts the CLI in a subprocess
@pytest.mark.parametrize(("sent", "code"), [(signal.SIGINT, 0), (signal.SIGTERM, -signal.SIGTERM)])
def test_serve_streams_then_stops_on_a_signal(tmp_path, sent, code):
    port = free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "harmony_agent.cli", "serve", "--model", "scripted:examples/weather_demo.yaml"]
    command += ["--port", str(port)]
    with log.open("wb") as errors:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            deadline = time.monotonic() + 60
            while not _accepts(port):
                assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
            stream = client.responses.create(model="gpt-oss", input="Weather in Paris?", stream=True)
            kinds = [event.type for event in stream]
            assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
            process.send_signal(sent)
            assert process.wait(timeout=15) == code
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    text = log.read_text()
    assert "Traceback" not in text and "Exception" not in text, text


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False
