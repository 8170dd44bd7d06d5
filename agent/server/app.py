"""``harmony-agent serve``: the agent behind OpenAI's Responses API and Chat Completions, on Starlette and uvicorn.

Each conversation gets an agent of its own (the client's instructions,
reasoning effort and function tools; the server's built-in tools) and one
session: its own sandbox, browser context and display. A request continues
a conversation in its session (by ``previous_response_id``, or by sending
back exactly what it has said and heard: see ``conversations.py``), so
python's variables are kept and a local model's KV cache is reused instead
of re-prefilled. Functions the client declared pause the turn: they come
back as ``function_call`` items (``tool_calls``), and the client's outputs
go on with it. Every request first passes the guard (``guard.py``).
"""

from __future__ import annotations

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
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from harmony_agent.runs.report import run_report
from harmony_agent.sandboxes.runtime import runtime
from harmony_agent.server.approvals import Approvals
from harmony_agent.server.chat_completions import ChatRequest, Chunks, completion, plan_chat
from harmony_agent.server.chat_completions import sse as chat_sse
from harmony_agent.server.conversations import (
    AgentSpec,
    ConversationStore,
    Plan,
    PublishedFiles,
    ServerConfig,
    plan_stateless,
)
from harmony_agent.server.guard import RequestGuard
from harmony_agent.server.protocol import RequestError, ResponseBuilder, ResponsesRequest, new_id
from harmony_agent.server.responses_input import Entry, keys, responses_entries, split
from harmony_agent.server.turns import Run, error_response, sse_bytes
from harmony_agent.transcript import transcript_line

log = logging.getLogger("harmony_agent.server")


class Api:
    """The routes of one server: its conversations, published files and open approval requests."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = ConversationStore(config.max_conversations, config.idle_seconds)
        self.files = PublishedFiles()
        self.approvals = Approvals()

    def unauthorized(self, request: Request) -> Response | None:
        if self.config.api_key is None:
            return None
        given = request.headers.get("authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {self.config.api_key}".encode()):
            return None
        return error_response(401, "invalid or missing API key (send Authorization: Bearer KEY)", "invalid_api_key")

    async def models(self, request: Request) -> Response:
        if (denied := self.unauthorized(request)) is not None:
            return denied
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": self.config.model.name, "object": "model", "created": 0, "owned_by": "harmony-agent"}],
            }
        )

    async def _body(self, request: Request) -> Any:
        """The request's JSON body, once its caller is let in; or the error :class:`Response` to send instead."""
        if (denied := self.unauthorized(request)) is not None:
            return denied
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error_response(400, "the request body is not JSON")
        await self.store.expire_idle()
        return body

    async def responses(self, request: Request) -> Response:
        if isinstance(body := await self._body(request), Response):
            return body
        try:
            req = ResponsesRequest.parse(body)
            plan = _prepare(self.config, self.store, req, self.approvals)
        except RequestError as exc:
            return error_response(400, str(exc))
        except LookupError as exc:
            return error_response(404, str(exc), "not_found")
        builder = ResponseBuilder(
            response_id=new_id("resp"),
            model=self.config.model.name,
            request=req,
            client_functions=plan.conversation.client_functions,
            publish=self.files.publish,
            publish_file=self.files.publish_inside,
        )
        run = Run(self.store, plan, builder, keep=req.store, ask=req.stream)
        if (refused := await run.begin()) is not None:
            return refused
        if req.stream:
            writes = (
                sse_bytes([{"event": out["type"], "data": json.dumps(out)} for out in batch])
                async for batch in run.batches()
            )
            return EventSourceResponse(writes, ping=15)
        await run.complete()
        return JSONResponse(builder.response())

    async def chat(self, request: Request) -> Response:
        """``POST /v1/chat/completions`` (see ``chat_completions.py``)."""
        if isinstance(body := await self._body(request), Response):
            return body
        try:
            req = ChatRequest.parse(body)
            plan = plan_chat(self.config, self.store, self.approvals, req)
        except RequestError as exc:
            return error_response(400, str(exc))
        builder = ResponseBuilder(
            response_id=new_id("resp"),
            model=self.config.model.name,
            request=req.as_responses_request(),
            client_functions=plan.conversation.client_functions,
            publish=self.files.publish,
            publish_file=self.files.publish_inside,
        )
        run = Run(self.store, plan, builder, keep=False, ask=False)
        if (refused := await run.begin()) is not None:
            return refused
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return EventSourceResponse(chat_sse(Chunks(builder, include_usage), run.batches()), ping=15)
        await run.complete()
        if builder.status == "failed":
            return error_response(500, (builder.error or {}).get("message", "the model failed"), "server_error")
        return JSONResponse(completion(builder))

    async def approval(self, request: Request) -> Response:
        """``POST /v1/approvals/{id}`` with ``{"approve": true}`` or ``{"approve": false, "reason": "..."}``."""
        if (denied := self.unauthorized(request)) is not None:
            return denied
        try:
            body = await request.json()
            approve, reason = body["approve"], body.get("reason")
            if not isinstance(approve, bool) or not (reason is None or isinstance(reason, str)):
                raise TypeError
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
            return error_response(400, 'send {"approve": true} or {"approve": false, "reason": "why"}')
        if not self.approvals.resolve(
            request.path_params["approval_id"], approve, (reason or "").strip()[:2000] or None
        ):
            return error_response(
                404, "no such approval request is waiting (answered already, or its run ended)", "not_found"
            )
        return JSONResponse({"approval_id": request.path_params["approval_id"], "approved": approve})

    async def download(self, request: Request) -> Response:
        """A stored response's run as its HTML report or its transcript (JSON lines of the run's events)."""
        if (denied := self.unauthorized(request)) is not None:
            return denied
        response_id, kind = request.path_params["response_id"], request.path_params["kind"]
        try:
            result = self.store.get(response_id).result
        except LookupError as exc:
            return error_response(404, str(exc), "not_found")
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
        return error_response(404, "ask for report.html or transcript.jsonl", "not_found")

    async def retrieve(self, request: Request) -> Response:
        """``GET /v1/responses/{id}``: a stored response object, as ``client.responses.retrieve(id)`` reads it."""
        if (denied := self.unauthorized(request)) is not None:
            return denied
        try:
            return JSONResponse(self.store.get(request.path_params["response_id"]).response)
        except LookupError as exc:
            return error_response(404, str(exc), "not_found")

    async def page(self, request: Request) -> Response:
        html = resources.files("harmony_agent.server").joinpath("page.html").read_text(encoding="utf-8")
        return HTMLResponse(html)

    async def info(self, request: Request) -> Response:
        """What the page needs to know: the model, the tools it may offer, whether a key is required."""
        return JSONResponse(
            {
                "model": self.config.model.name,
                "tools": sorted(self.config.builtin_tools),
                "auth": self.config.api_key is not None,
                "approve": self.config.approve,
            }
        )

    async def file(self, request: Request) -> Response:
        """A file a response linked to (a screenshot, a file the run made), behind the same key as the API.

        The page fetches it with the key. It is always an attachment, in a sandboxed origin, never sniffed:
        a file the model wrote (HTML, SVG) must not run as a page of this server, which holds the API.
        """
        if (denied := self.unauthorized(request)) is not None:
            return denied
        path = self.files.get(request.path_params["token"])
        if path is None:
            return error_response(404, "no such file", "not_found")
        return FileResponse(
            path,
            filename=path.name,
            content_disposition_type="attachment",
            headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"},
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        await self.store.close()  # every conversation's sandbox, browser and display go with the server


def create_app(config: ServerConfig) -> Starlette:
    """The ASGI app: ``POST /v1/responses`` and ``/v1/chat/completions``, ``GET /v1/models``, ``GET /`` (the chat
    page), ``GET /info``, behind the request guard (``guard.py``)."""
    api = Api(config)
    app = Starlette(
        routes=[
            Route("/v1/responses", api.responses, methods=["POST"]),
            Route("/v1/chat/completions", api.chat, methods=["POST"]),
            Route("/v1/models", api.models, methods=["GET"]),
            Route("/v1/approvals/{approval_id}", api.approval, methods=["POST"]),
            Route("/v1/responses/{response_id}", api.retrieve, methods=["GET"]),
            Route("/v1/responses/{response_id}/{kind}", api.download, methods=["GET"]),
            Route("/", api.page, methods=["GET"]),
            Route("/info", api.info, methods=["GET"]),
            Route("/files/{token}", api.file, methods=["GET"]),
        ],
        lifespan=api.lifespan,
        middleware=[
            Middleware(
                RequestGuard,
                host=config.host,
                allow_hosts=config.allow_hosts,
                max_body_bytes=config.max_body_bytes,
                max_json_depth=config.max_json_depth,
            )
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.store = api.store
    app.state.files = api.files
    return app


def _prepare(config: ServerConfig, store: ConversationStore, req: ResponsesRequest, approvals: Approvals) -> Plan:
    """Which conversation a Responses request runs in, continuing what, with what new input."""
    instructions: list[str]
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


async def _http_error(request: Request, exc: Exception) -> Response:
    """404, 405 and the like in the API's error shape, which the SDKs read (Starlette would answer plain text)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(404, f"no route {request.method} {request.url.path}", "not_found")
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return error_response(
            405, f"{request.method} is not allowed on {request.url.path} (allowed: {allowed})", "method_not_allowed"
        )
    return error_response(exc.status_code, str(exc.detail), "invalid_request_error")


async def _server_error(request: Request, exc: Exception) -> Response:
    """An unexpected failure: logged here, and a JSON error for the client instead of a bare 500."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, f"the server failed: {type(exc).__name__}", "server_error")


def serve(config: ServerConfig, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the server until interrupted (uvicorn). Requests must name ``host`` (or an allowed host) in Host."""
    import dataclasses

    import uvicorn

    app = create_app(dataclasses.replace(config, host=host))
    run_on_runtime(uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")))


def run_on_runtime(server: Any) -> None:
    """Run a ``uvicorn.Server`` on the process's runtime loop until it exits; blocks the calling thread.

    Why there: the sessions' turns run on the runtime, so with uvicorn on the same loop a turn's events go
    to the socket directly. On a loop of its own, every request and every burst of events crossed between
    two threads, and each crossing made the two fight for the interpreter lock: at one client that was
    about a millisecond of a 4 to 5 ms request (docs/runtime.md). uvicorn installs its signal handlers
    only on the main thread, so they are installed here, by the caller's thread: SIGINT and SIGTERM
    still end the server gracefully (a second SIGINT forces it), and are raised again once it has stopped.
    """
    try:
        with server.capture_signals():
            runtime().run(server.serve())
    except KeyboardInterrupt:  # the SIGINT that stopped it, raised again: a stop that was asked for, and done
        pass
