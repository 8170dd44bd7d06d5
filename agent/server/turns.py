"""One request's turn: started in its conversation, driven into a ResponseBuilder, then held or released.

Both APIs run turns this way; Chat Completions then reads the builder's
output items and events as messages and chunks (``chat_completions.py``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from sse_starlette.sse import ServerSentEvent
from starlette.responses import JSONResponse, Response

from harmony_agent.server.conversations import ConversationStore, Plan, Stored
from harmony_agent.server.protocol import ResponseBuilder
from harmony_agent.server.responses_input import keys, responses_entries
from harmony_agent.session import SessionBusyError

#: How long a stream's batch waits, after its first event, for more to go in the same write.
HOLD_SECONDS = 0.002


def sse_bytes(events: list[dict[str, str]]) -> bytes:
    """Server-sent events (``event`` and ``data`` fields), framed as sse-starlette frames them, for one write."""
    return b"".join(ServerSentEvent(data=event["data"], event=event.get("event")).encode() for event in events)


def error_response(status: int, message: str, code: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": code, "code": code}}, status_code=status)


class Run:
    """One request's turn in its conversation: started, driven into the builder, then kept or released."""

    def __init__(self, store: ConversationStore, plan: Plan, builder: ResponseBuilder, *, keep: bool, ask: bool):
        self.store, self.plan, self.builder, self.keep = store, plan, builder, keep
        #: Approval requests go to this stream (the page's); a request that is not streamed has nobody to ask.
        self.gate = plan.conversation.gate if ask else None
        self.events: AsyncGenerator[Any, None] | None = None
        self.first: Any = None

    async def begin(self) -> Response | None:
        """Start the turn, and take its first event, so a refusal (a busy session) comes before any reply."""
        conversation, plan = self.plan.conversation, self.plan
        if self.gate is not None:
            self.gate.expect()  # the run may ask before the stream is open: hold those requests for it
        try:
            self.events = conversation.session.stream(
                plan.task, previous=plan.previous, tool_outputs=plan.outputs or None
            )
            self.first = await self.events.__anext__()
            conversation.running = True
        except SessionBusyError:  # another request's stream owns the gate: leave it be
            return error_response(
                409, "this conversation is answering another request; wait for it to finish", "conflict"
            )
        except ValueError as exc:  # the turn refused its input (the session checks it again)
            if self.gate is not None:
                self.gate.detach()
            return error_response(400, str(exc))
        except BaseException:
            if self.gate is not None:
                self.gate.detach()
            raise
        return None

    async def _drive(self) -> AsyncIterator[dict[str, Any]]:
        assert self.events is not None
        for out in self.builder.feed(self.first):
            yield out
        async for event in self.events:
            for out in self.builder.feed(event):
                yield out

    async def complete(self) -> None:
        """Run the turn to its end without streaming."""
        async for _ in self._drive():
            pass
        await self._finish()

    async def _finish(self) -> None:
        conversation, builder = self.plan.conversation, self.builder
        conversation.running = False
        conversation.call_ids.update({client: loop for loop, client in builder.client_call_ids.items()})
        _, said = responses_entries(builder.output)
        conversation.keys = self.plan.keys + keys(said)
        result = conversation.session.last_result
        stored = Stored(conversation, result, builder.response()) if self.keep and result is not None else None
        await self.store.hold(conversation, builder.id, stored)

    async def stream(self) -> AsyncIterator[dict[str, Any]]:
        """The builder's events as they happen, approval requests among them; a client that hangs up ends the run."""
        async for batch in self.batches():
            for out in batch:
                yield out

    async def batches(self) -> AsyncIterator[list[dict[str, Any]]]:
        """:meth:`stream`'s events in batches, so a burst (a step's events, a short answer) goes out in one
        socket write instead of one each.

        Each write is a system call that also wakes the client: on this project's 2-core machine about 0.1 to
        0.2 ms, the largest cost a streamed request added to the turn itself (benchmarks/server.py). So a
        batch is held for :data:`HOLD_SECONDS` after its first event, taking in what comes meanwhile, and
        sent when that time is up or the turn ends: no event waits longer than that, and a reader cannot tell
        two milliseconds apart. A short answer's 17 events took 8 writes when each batch was sent as soon as
        nothing was pending, and take 1 to 2 now.
        """
        assert self.events is not None
        finished = False
        # The run's events and, with --approve, approval requests (sent from the session's thread) arrive here.
        waiting: collections.deque[tuple[str, Any]] = collections.deque()
        arrived = asyncio.Event()
        loop = asyncio.get_running_loop()

        def put(entry: tuple[str, Any]) -> None:
            waiting.append(entry)
            arrived.set()

        async def pump() -> None:
            try:
                async for out in self._drive():
                    put(("out", out))
                put(("end", None))
            except Exception as exc:  # handed to the stream, which raises it
                put(("error", exc))

        if self.gate is not None:
            self.gate.attach(lambda event: loop.call_soon_threadsafe(put, ("out", event)))
        running = asyncio.ensure_future(pump())
        try:
            batch = list(self.builder.created())
            held_since = loop.time()
            while True:
                if not waiting:
                    if batch and loop.time() - held_since >= HOLD_SECONDS:
                        yield batch
                        batch = []
                    arrived.clear()  # wait for the next event, or (holding a batch) for its time to be up
                    timer = loop.call_at(held_since + HOLD_SECONDS, arrived.set) if batch else None
                    await arrived.wait()
                    if timer is not None:
                        timer.cancel()
                    continue
                kind, item = waiting.popleft()
                if kind == "end":
                    break
                if kind == "error":
                    if batch:
                        yield batch
                    raise item
                if not batch:
                    held_since = loop.time()
                batch.append(item)
            if batch:
                yield batch
            await self._finish()
            finished = True
        finally:
            if self.gate is not None:
                self.gate.detach()  # nobody is left to ask: what is pending is denied
            if not finished:
                # The client went away mid-stream: its run is cancelled and its session released.
                running.cancel()
                with contextlib.suppress(BaseException):
                    await running
                await self.events.aclose()
                self.plan.conversation.running = False
                await self.store.release(self.plan.conversation)
