"""A streamed reply goes out in as few socket writes as its timing allows.

Each ASGI body message is a socket write (a system call, and a wake-up of the client): one per event
was the largest cost a streamed request added to the turn itself (``benchmarks/server.py``). Events
that are ready together (a step's item and part events, a short answer's deltas relayed in one burst)
are sent in one message; an event that comes later still goes out at once.
"""

from __future__ import annotations

import asyncio
import json

from harmony_agent import PolicyModel
from harmony_agent.sandboxes.runtime import runtime
from harmony_agent.server import ServerConfig, create_app

ANSWER = (
    "<|channel|>analysis<|message|>Short.<|end|><|start|>assistant<|channel|>final<|message|>A short answer.<|return|>"
)


async def body_writes(path: str, request: dict) -> list[bytes]:
    """The body messages the app sends for one request, straight at the ASGI level (no socket to merge them)."""
    app = create_app(ServerConfig(PolicyModel(lambda messages: ANSWER)))
    sent: list[dict] = []
    finished = asyncio.Event()
    asked = False

    async def receive() -> dict:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": json.dumps(request).encode(), "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            finished.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    return [m["body"] for m in sent if m["type"] == "http.response.body" and m.get("body")]


def test_a_short_streamed_answer_goes_out_in_fewer_writes_than_events():
    """On the runtime's loop (where the turn runs, so the interleaving is the same every time): the scripted
    model yields to the loop after each token, as a real one does between tokens, and what is ready at once
    (the response's first events, a step's item and part events) shares a write. Chat Completions chunks are
    one per token delta, so there each write is already one chunk."""
    request = {"model": "gpt-oss", "input": "hi", "stream": True, "store": False}
    writes = runtime().run(body_writes("/v1/responses", request))
    events = sum(write.count(b"event:") for write in writes)
    assert events >= 12 and b"short" in b"".join(writes), writes
    assert len(writes) <= events * 2 / 3, [write.count(b"event:") for write in writes]
