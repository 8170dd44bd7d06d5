"""A streamed reply goes out in as few socket writes as its timing allows.

Each ASGI body message is a socket write (a system call, and a wake-up of the client): one per event
was the largest cost a streamed request added to the turn itself (``benchmarks/server.py``). Events
that are ready together (a step's item and part events, a short answer's deltas relayed in one burst)
are sent in one message; an event that comes later still goes out at once.
"""

from __future__ import annotations

import asyncio
import json
import time

from harmony_agent import PolicyModel
from harmony_agent.sandboxes.runtime import runtime
from harmony_agent.server import ServerConfig, create_app, turns

ANSWER = (
    "<|channel|>analysis<|message|>Short.<|end|><|start|>assistant<|channel|>final<|message|>A short answer.<|return|>"
)


async def body_writes(path: str, request: dict, policy=lambda messages: ANSWER) -> list[bytes]:
    """The body messages the app sends for one request, straight at the ASGI level (no socket to merge them)."""
    return [body for _, body in await timed_body_writes(path, request, policy)]


async def timed_body_writes(path: str, request: dict, policy) -> list[tuple[float, bytes]]:
    """:func:`body_writes`, each with the time (``time.monotonic``) it was sent."""
    app = create_app(ServerConfig(PolicyModel(policy)))
    sent: list[tuple[float, dict]] = []
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
        sent.append((time.monotonic(), message))
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
    return [(at, m["body"]) for at, m in sent if m["type"] == "http.response.body" and m.get("body")]


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


def test_events_made_close_together_share_one_write(monkeypatch):
    """A batch is held a moment for what comes next (``HOLD_SECONDS``): with a long hold, the whole short answer
    (17 events, the scripted model yielding to the loop after each token) goes out in one write, sent the moment
    the turn ends rather than when the hold is up."""
    monkeypatch.setattr(turns, "HOLD_SECONDS", 30.0, raising=False)
    request = {"model": "gpt-oss", "input": "hi", "stream": True, "store": False}
    started = time.monotonic()
    writes = runtime().run(body_writes("/v1/responses", request))
    assert time.monotonic() - started < 10
    assert len(writes) == 1, [write.count(b"event:") for write in writes]
    assert writes[0].count(b"event:") >= 12 and b"response.completed" in writes[0]


def test_a_turn_that_waits_has_its_events_sent_when_the_hold_is_up(monkeypatch):
    """The hold never keeps events back while the turn waits (for a model, a tool): the response's first events
    go out after ``HOLD_SECONDS``, not when the model is done."""
    monkeypatch.setattr(turns, "HOLD_SECONDS", 0.05, raising=False)

    async def slow(messages):
        await asyncio.sleep(1.0)
        return ANSWER

    request = {"model": "gpt-oss", "input": "hi", "stream": True, "store": False}
    writes = runtime().run(timed_body_writes("/v1/responses", request, slow))
    assert b"response.created" in writes[0][1] and b"response.completed" in writes[-1][1]
    assert writes[-1][0] - writes[0][0] > 0.5, [(at - writes[0][0], body[:40]) for at, body in writes]


def test_a_short_chat_completion_goes_out_in_one_write_with_its_done(monkeypatch):
    """Chat Completions: the run's last chunks and ``data: [DONE]`` share the last write."""
    monkeypatch.setattr(turns, "HOLD_SECONDS", 30.0, raising=False)
    request = {"model": "gpt-oss", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    writes = runtime().run(body_writes("/v1/chat/completions", request))
    assert len(writes) == 1, writes
    assert writes[0].count(b"data:") >= 5 and writes[0].rstrip().endswith(b"data: [DONE]")
