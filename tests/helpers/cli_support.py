"""Helpers for driving the real CLI: a pseudo-terminal session, and a local Ollama-style streaming server.

The pty is a real one (the CLI gets a controlling terminal, so Ctrl-C and
Ctrl-D go through the kernel's line discipline exactly as at a keyboard).
The server is a stand-in for Ollama (none can run here): it speaks Ollama's
``/api/generate`` streaming protocol and can hold a completion part-way
until the test releases it, which is how a test proves that text reached the
screen while the model was still writing.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from helpers import ROOT

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][A-Za-z0-9]|\r")


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment a CLI subprocess gets: this checkout first, a config and history of its own."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env.pop("HARMONY_AGENT_CONFIG", None)
    env.update(extra)
    return env


class PtySession:
    """The CLI in a pseudo-terminal of its own: send keys, wait for text, read the exit code."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], columns: int = 160) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))

        def controlling_terminal() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harmony_agent.cli", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env={**env, "TERM": "xterm-256color", "COLUMNS": str(columns)},
            preexec_fn=controlling_terminal,
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.raw = b""
        self.seen = 0  # text before this offset was matched already

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the child closed the terminal
            return False
        self.raw += data
        return bool(data)

    def expect(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """Wait until ``pattern`` (a regular expression) appears after the last match."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.compile(pattern).search(self.text, self.seen)
            if match:
                self.seen = match.end()
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} did not appear within {timeout} s; the screen:\n{self.text[-3000:]}")
            if not self._read(0.2) and self.proc.poll() is not None:
                self._read(0.2)
                match = re.compile(pattern).search(self.text, self.seen)
                if match:
                    self.seen = match.end()
                    return match
                raise AssertionError(
                    f"the CLI exited ({self.proc.returncode}) before {pattern!r}; the screen:\n{self.text[-3000:]}"
                )

    def expect_prompt(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """Wait for a prompt (or the echo of keys), then until the CLI sleeps waiting for the keyboard.

        A Ctrl-C sent while readline is between two select() calls (after writing the prompt, or after
        taking keys) is noted by Python but wakes nothing: CPython's readline looks at signals only when
        select() is interrupted, so it waits for the next key, and the terminal drops the keys typed before
        the Ctrl-C. A person is never that fast; a test that answers at once is, now and then.
        """
        match = self.expect(pattern, timeout)
        wchan = Path(f"/proc/{self.proc.pid}/wchan")  # where the main thread sleeps in the kernel
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "poll" not in wchan.read_text() and "select" not in wchan.read_text():
            time.sleep(0.01)
        return match

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        if self.proc.poll() is None:
            self.proc.kill()
            raise AssertionError(f"the CLI did not exit within {timeout} s; the screen:\n{self.text[-3000:]}")
        while self._read(0.05):
            pass
        os.close(self.master)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class FakeOllama:
    """Serves ``/api/generate`` like Ollama, one scripted completion per request, and ``/api/tags`` (``models``).

    Each completion is a list of text pieces streamed as separate chunks; a
    piece ``None`` is a gate: the stream waits there until :meth:`release`.
    """

    def __init__(
        self, completions: list[list[str | None]], port: int = 0, models: tuple[str, ...] = ("gpt-oss:20b",)
    ) -> None:
        self.completions = list(completions)
        self.models = models  # what ``GET /api/tags`` lists (the models pulled)
        self.gate = threading.Event()
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                found = self.path == "/api/tags"
                body = json.dumps({"models": [{"name": n, "model": n} for n in fake.models]} if found else {})
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                pieces = (
                    fake.completions.pop(0)
                    if fake.completions
                    else ["<|channel|>final<|message|>(no script left)<|return|>"]
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.end_headers()
                for piece in pieces:
                    if piece is None:
                        fake.gate.wait(60)
                        fake.gate.clear()
                        continue
                    self.wfile.write(
                        json.dumps({"model": body.get("model"), "response": piece, "done": False}).encode() + b"\n"
                    )
                    self.wfile.flush()
                self.wfile.write(
                    json.dumps(
                        {"model": body.get("model"), "response": "", "done": True, "done_reason": "stop"}
                    ).encode()
                    + b"\n"
                )
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOllama:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()

    def release(self) -> None:
        self.gate.set()


def run_cli(
    args: list[str],
    *,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    text: bool = True,
) -> subprocess.CompletedProcess:
    """The CLI run to its end as a user runs it (``python -m harmony_agent.cli ARGS``), its output captured."""
    command = [sys.executable, "-m", "harmony_agent.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=text, timeout=timeout)
