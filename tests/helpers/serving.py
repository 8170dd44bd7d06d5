"""The Responses server, started in-process on a free port of 127.0.0.1 for one test."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import uvicorn

from harmony_agent.server import ServerConfig, create_app
from helpers.processes import free_port


@contextlib.contextmanager
def running(config: ServerConfig) -> Iterator[str]:
    """Serve ``config`` until the block ends; yields the ``/v1`` base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(20)
