"""``harmony-agent serve``: the agent behind OpenAI's Responses API, on Starlette and uvicorn.

Each conversation (a request without ``previous_response_id``) gets an
agent of its own (the client's instructions, reasoning effort and function
tools; the server's built-in tools) and one session: its own sandbox,
browser context and display. A request that continues a conversation runs
in that session, so a local model's KV cache is reused instead of
re-prefilled. Functions the client declared pause the turn: they come back
as ``function_call`` items, and the client's ``function_call_output`` items
go on with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from harmony_agent.runs.report import run_report
from harmony_agent.server.approvals import Approvals
from harmony_agent.server.conversations import (
    AgentSpec,
    ConversationStore,
    Plan,
    Screenshots,
    ServerConfig,
    Stored,
    plan_stateless,
)
from harmony_agent.server.protocol import RequestError, ResponseBuilder, ResponsesRequest, new_id
from harmony_agent.server.responses_input import Entry, keys, responses_entries, split
from harmony_agent.session import SessionBusyError
from harmony_agent.transcript import transcript_line

log = logging.getLogger("harmony_agent.server")


def create_app(config: ServerConfig) -> Starlette:
    """The ASGI app: ``POST /v1/responses``, ``GET /v1/models``, ``GET /`` (the chat page), ``GET /info``."""
    store = ConversationStore(config.max_conversations)
    screenshots = Screenshots()
    approvals = Approvals()

    def unauthorized(request: Request) -> Response | None:
        if config.api_key is None:
            return None
        given = request.headers.get("authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {config.api_key}".encode()):
            return None
        return _error(401, "invalid or missing API key (send Authorization: Bearer KEY)", "invalid_api_key")

    async def models(request: Request) -> Response:
        if (denied := unauthorized(request)) is not None:
            return denied
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": config.model.name, "object": "model", "created": 0, "owned_by": "harmony-agent"}],
            }
        )

    async def responses(request: Request) -> Response:
        if (denied := unauthorized(request)) is not None:
            return denied
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "the request body is not JSON")
        try:
            req = ResponsesRequest.parse(body)
            plan = _prepare(config, store, req, approvals)
        except RequestError as exc:
            return _error(400, str(exc))
        except LookupError as exc:
            return _error(404, str(exc), "not_found")
        builder = ResponseBuilder(
            response_id=new_id("resp"),
            model=config.model.name,
            request=req,
            client_functions=plan.conversation.client_functions,
            publish=screenshots.publish,
        )
        run = Run(store, plan, builder, keep=req.store, ask=req.stream)
        if (refused := await run.begin()) is not None:
            return refused
        if req.stream:
            events = ({"event": out["type"], "data": json.dumps(out)} async for out in run.stream())
            return EventSourceResponse(events, ping=15)
        await run.complete()
        return JSONResponse(builder.response())

    async def approval(request: Request) -> Response:
        """``POST /v1/approvals/{id}`` with ``{"approve": true}`` or ``{"approve": false, "reason": "..."}``."""
        if (denied := unauthorized(request)) is not None:
            return denied
        try:
            body = await request.json()
            approve, reason = body["approve"], body.get("reason")
            if not isinstance(approve, bool) or not (reason is None or isinstance(reason, str)):
                raise TypeError
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
            return _error(400, 'send {"approve": true} or {"approve": false, "reason": "why"}')
        if not approvals.resolve(request.path_params["approval_id"], approve, (reason or "").strip()[:2000] or None):
            return _error(404, "no such approval request is waiting (answered already, or its run ended)", "not_found")
        return JSONResponse({"approval_id": request.path_params["approval_id"], "approved": approve})

    async def download(request: Request) -> Response:
        """A stored response's run as its HTML report or its transcript (JSON lines of the run's events)."""
        if (denied := unauthorized(request)) is not None:
            return denied
        response_id, kind = request.path_params["response_id"], request.path_params["kind"]
        try:
            result = store.get(response_id).result
        except LookupError as exc:
            return _error(404, str(exc), "not_found")
        if kind == "report.html":
            html = run_report(result.events, base=Path.cwd(), title=f"harmony-agent {response_id}")
            return HTMLResponse(html, headers={"Content-Disposition": f'attachment; filename="{response_id}.html"'})
        if kind == "transcript.jsonl":
            lines = "".join(line for event in result.events if (line := transcript_line(event)) is not None)
            return Response(
                lines,
                media_type="application/x-ndjson",
                headers={"Content-Disposition": f'attachment; filename="{response_id}.jsonl"'},
            )
        return _error(404, "ask for report.html or transcript.jsonl", "not_found")

    async def retrieve(request: Request) -> Response:
        """``GET /v1/responses/{id}``: a stored response object, as ``client.responses.retrieve(id)`` reads it."""
        if (denied := unauthorized(request)) is not None:
            return denied
        try:
            return JSONResponse(store.get(request.path_params["response_id"]).response)
        except LookupError as exc:
            return _error(404, str(exc), "not_found")

    async def page(request: Request) -> Response:
        html = resources.files("harmony_agent.server").joinpath("page.html").read_text(encoding="utf-8")
        return HTMLResponse(html)

    async def info(request: Request) -> Response:
        """What the page needs to know: the model, the tools it may offer, whether a key is required."""
        return JSONResponse(
            {
                "model": config.model.name,
                "tools": sorted(config.builtin_tools),
                "auth": config.api_key is not None,
                "approve": config.approve,
            }
        )

    async def file(request: Request) -> Response:
        path = screenshots.get(request.path_params["token"])
        if path is None:
            return _error(404, "no such file", "not_found")
        return FileResponse(path)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await store.close()  # every conversation's sandbox, browser and display go with the server

    app = Starlette(
        routes=[
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/approvals/{approval_id}", approval, methods=["POST"]),
            Route("/v1/responses/{response_id}", retrieve, methods=["GET"]),
            Route("/v1/responses/{response_id}/{kind}", download, methods=["GET"]),
            Route("/", page, methods=["GET"]),
            Route("/info", info, methods=["GET"]),
            Route("/files/{token}", file, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.store = store
    return app


def _prepare(config: ServerConfig, store: ConversationStore, req: ResponsesRequest, approvals: Approvals) -> Plan:
    """Which conversation a Responses request runs in, continuing what, with what new input."""
    if isinstance(req.input, str):
        instructions, entries = [], [Entry("user", req.input)]
    else:
        instructions, entries = responses_entries(req.input)
    if req.previous_response_id:
        return _continue_stored(store, req.previous_response_id, entries)
    spec = AgentSpec(
        instructions="\n\n".join(part for part in [req.instructions, *instructions] if part) or None,
        effort=req.reasoning.effort if req.reasoning and req.reasoning.effort else "medium",
        builtin_names=req.builtin_tools(),
        functions=req.function_tools(),
        max_tokens=req.max_output_tokens,
    )
    return plan_stateless(config, store, approvals, spec, split([], entries))


def _continue_stored(store: ConversationStore, response_id: str, entries: list[Entry]) -> Plan:
    """A request with ``previous_response_id``: its input is only the new messages and function outputs."""
    stored = store.get(response_id)
    conversation, previous = stored.conversation, stored.result
    if any(e.kind not in ("user", "output") for e in entries):
        raise RequestError(
            "with previous_response_id, send only the new input (messages and function_call_output items); "
            "to send the whole conversation, leave previous_response_id out"
        )
    text = "\n\n".join(e.text for e in entries if e.kind == "user") or None
    pending = {c.call_id for c in previous.pending_calls}
    mapped = {}
    for entry in (e for e in entries if e.kind == "output"):
        loop_id = conversation.call_ids.get(entry.call_id or "")
        if loop_id is None or loop_id not in pending:
            raise RequestError(
                f"function_call_output for {entry.call_id!r}, which the previous response is not waiting for"
            )
        mapped[loop_id] = entry.text
    if pending and len(mapped) != len(pending):
        waiting = [c for c, local in conversation.call_ids.items() if local in pending and local not in mapped]
        raise RequestError(f"the previous response is waiting for function_call_output items for {waiting}")
    if not text and not mapped:
        raise RequestError("the request has no new input: send a message or function_call_output items")
    return Plan(conversation, previous, text, mapped, conversation.keys + keys(entries), continued=True)


class Run:
    """One request's turn in its conversation: started, driven into the builder, then kept or released."""

    def __init__(self, store: ConversationStore, plan: Plan, builder: ResponseBuilder, *, keep: bool, ask: bool):
        self.store, self.plan, self.builder, self.keep = store, plan, builder, keep
        #: Approval requests go to this stream (the page's); a request that is not streamed has nobody to ask.
        self.gate = plan.conversation.gate if ask else None
        self.events: AsyncIterator[Any] | None = None
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
        except SessionBusyError:  # another request's stream owns the gate: leave it be
            return _error(409, "this conversation is answering another request; wait for it to finish", "conflict")
        except ValueError as exc:  # the turn refused its input (the session checks it again)
            if self.gate is not None:
                self.gate.detach()
            return _error(400, str(exc))
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
        conversation.call_ids.update({client: loop for loop, client in builder.client_call_ids.items()})
        _, said = responses_entries([item for item in builder.output if item.get("type") != "tool_call"])
        conversation.keys = self.plan.keys + keys(said)
        result = conversation.session.last_result
        stored = Stored(conversation, result, builder.response()) if self.keep and result is not None else None
        await self.store.hold(conversation, builder.id, stored)

    async def stream(self) -> AsyncIterator[dict[str, Any]]:
        """The builder's events as they happen, approval requests among them; a client that hangs up ends the run."""
        assert self.events is not None
        finished = False
        # The run's events and, with --approve, approval requests (sent from the session's thread) share one queue.
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def pump() -> None:
            try:
                async for out in self._drive():
                    await queue.put(("out", out))
                await queue.put(("end", None))
            except Exception as exc:  # handed to the stream, which raises it
                await queue.put(("error", exc))

        if self.gate is not None:
            self.gate.attach(lambda event: loop.call_soon_threadsafe(queue.put_nowait, ("out", event)))
        running = asyncio.ensure_future(pump())
        try:
            for out in self.builder.created():
                yield out
            while True:
                kind, item = await queue.get()
                if kind == "end":
                    break
                if kind == "error":
                    raise item
                yield item
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
                await self.store.release(self.plan.conversation)


def _error(status: int, message: str, code: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": code, "code": code}}, status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    """404, 405 and the like in the API's error shape, which the SDKs read (Starlette would answer plain text)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error(404, f"no route {request.method} {request.url.path}", "not_found")
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return _error(
            405, f"{request.method} is not allowed on {request.url.path} (allowed: {allowed})", "method_not_allowed"
        )
    return _error(exc.status_code, str(exc.detail), "invalid_request_error")


async def _server_error(request: Request, exc: Exception) -> Response:
    """An unexpected failure: logged here, and a JSON error for the client instead of a bare 500."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(500, f"the server failed: {type(exc).__name__}", "server_error")


def serve(config: ServerConfig, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the server until interrupted (uvicorn)."""
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")
