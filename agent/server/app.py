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
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from openai_harmony import ToolDescription
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from harmony_agent.agent import Agent
from harmony_agent.loop import RunResult
from harmony_agent.models import Model
from harmony_agent.runs.report import run_report
from harmony_agent.server.approvals import ApprovalGate, Approvals
from harmony_agent.server.protocol import FunctionToolSpec, RequestError, ResponseBuilder, ResponsesRequest, new_id
from harmony_agent.session import Session, SessionBusyError
from harmony_agent.tools.base import FUNCTIONS_NAMESPACE, Tool, ToolCall, ToolResult
from harmony_agent.transcript import transcript_line

log = logging.getLogger("harmony_agent.server")


class ClientFunction(Tool):
    """A function the client declared: the model may call it, and the client answers the call."""

    namespace = FUNCTIONS_NAMESPACE
    answered_by_caller = True

    def __init__(self, spec: FunctionToolSpec) -> None:
        self.spec = spec

    def descriptions(self) -> list[ToolDescription]:
        return [ToolDescription.new(self.spec.name, self.spec.description or "", parameters=self.spec.parameters)]

    async def _process(self, call: ToolCall) -> ToolResult:  # pragma: no cover - the loop never runs it
        raise RuntimeError("a client function is answered by the client")

    def __repr__(self) -> str:
        return f"ClientFunction({self.spec.name!r})"


@dataclass
class ServerConfig:
    """What the server serves: one model, the built-in tools it may run, and how it guards them."""

    model: Model
    builtin_tools: dict[str, Tool] = field(default_factory=dict)
    api_key: str | None = None
    max_steps: int = 20
    max_conversations: int = 64
    #: Every built-in tool call waits for a person's approval on the chat page (see ``approvals.py``).
    approve: bool = False


@dataclass
class Conversation:
    agent: Agent
    session: Session
    client_functions: set[str]
    #: The call ids the client saw, mapped to the loop's own.
    call_ids: dict[str, str] = field(default_factory=dict)
    gate: ApprovalGate | None = None


@dataclass
class Stored:
    """A stored response: its conversation (to continue it), its run, and the response object (to retrieve it)."""

    conversation: Conversation
    result: RunResult
    response: dict[str, Any]


class ConversationStore:
    """Conversations by response id, the oldest closed once there are too many."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._responses: OrderedDict[str, Stored] = OrderedDict()

    def get(self, response_id: str) -> Stored:
        try:
            found = self._responses[response_id]
        except KeyError:
            raise LookupError(
                f"no stored response {response_id!r} (responses made with store=false, or evicted, cannot be continued)"
            ) from None
        self._responses.move_to_end(response_id)
        return found

    async def put(self, response_id: str, stored: Stored) -> None:
        self._responses[response_id] = stored
        while len({id(s.conversation) for s in self._responses.values()}) > self.limit:
            _, oldest = self._responses.popitem(last=False)
            if all(s.conversation is not oldest.conversation for s in self._responses.values()):
                await oldest.conversation.session.aclose()

    async def close(self) -> None:
        conversations = {id(s.conversation): s.conversation for s in self._responses.values()}
        self._responses.clear()
        for conversation in conversations.values():
            await conversation.session.aclose()


class Screenshots:
    """Screenshots the tools reported, served by an unguessable name: no other file can be asked for."""

    def __init__(self) -> None:
        self._paths: dict[str, Path] = {}

    def publish(self, path: str) -> str:
        token = secrets.token_urlsafe(16) + Path(path).suffix.lower()
        self._paths[token] = Path(path)
        return f"/files/{token}"

    def get(self, token: str) -> Path | None:
        path = self._paths.get(token)
        return path if path is not None and path.is_file() else None


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
            conversation, previous, text, outputs = _prepare(config, store, req, approvals)
        except RequestError as exc:
            return _error(400, str(exc))
        except LookupError as exc:
            return _error(404, str(exc), "not_found")
        builder = ResponseBuilder(
            response_id=new_id("resp"),
            model=config.model.name,
            request=req,
            client_functions=conversation.client_functions,
            publish=screenshots.publish,
        )
        gate = conversation.gate if req.stream else None
        if gate is not None:
            gate.expect()  # the run may ask before the stream is open: hold those requests for it
        try:
            events = conversation.session.stream(text, previous=previous, tool_outputs=outputs or None)
            first = await _first(events)
        except SessionBusyError:  # another request's stream owns the gate: leave it be
            return _error(409, "this conversation is answering another request; wait for it to finish", "conflict")
        except BaseException:
            if gate is not None:
                gate.detach()
            raise
        if req.stream:
            return EventSourceResponse(_sse(config, store, conversation, builder, first, events, req), ping=15)
        async for _ in _drive(builder, first, events):
            pass
        await _finish(store, conversation, builder, req)
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


def _prepare(
    config: ServerConfig, store: ConversationStore, req: ResponsesRequest, approvals: Approvals
) -> tuple[Conversation, RunResult | None, str | None, dict[str, str]]:
    text, outputs, extra = req.conversation_input()
    if req.previous_response_id:
        stored = store.get(req.previous_response_id)
        conversation, previous = stored.conversation, stored.result
        pending = {c.call_id for c in previous.pending_calls}
        mapped = {}
        for client_id, output in outputs.items():
            loop_id = conversation.call_ids.get(client_id)
            if loop_id is None or loop_id not in pending:
                raise RequestError(
                    f"function_call_output for {client_id!r}, which the previous response is not waiting for"
                )
            mapped[loop_id] = output
        if pending and len(mapped) != len(pending):
            waiting = [c for c, local in conversation.call_ids.items() if local in pending and local not in mapped]
            raise RequestError(f"the previous response is waiting for function_call_output items for {waiting}")
        if not text and not mapped:
            raise RequestError("the request has no new input: send a message or function_call_output items")
        return conversation, previous, text, mapped
    if outputs:
        raise RequestError("function_call_output items continue a conversation: send previous_response_id too")
    if not text:
        raise RequestError("the request has no user input")
    names = req.builtin_tools()
    missing = [name for name in names if name not in config.builtin_tools]
    if missing:
        enabled = ", ".join(sorted(config.builtin_tools)) or "none"
        raise RequestError(
            f"this server does not run the {', '.join(missing)} tool (enabled: {enabled}); start it with --tools"
        )
    functions = req.function_tools()
    instructions = "\n\n".join(part for part in (req.instructions, extra) if part) or None
    tools: list[Tool] = [config.builtin_tools[name].fresh() for name in names]
    tools += [ClientFunction(spec) for spec in functions]
    gate = approvals.gate() if config.approve else None
    try:
        agent = Agent(
            config.model,
            tools=tools,
            instructions=instructions,
            reasoning=(req.reasoning.effort if req.reasoning and req.reasoning.effort else "medium"),
            max_steps=config.max_steps,
            max_tokens=req.max_output_tokens,
            approve=gate,
        )
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    return Conversation(agent, agent.default_session, {spec.name for spec in functions}, gate=gate), None, text, {}


async def _first(events: AsyncIterator[Any]) -> Any:
    """The first event, so errors that refuse the request (a busy session) surface before any reply is sent."""
    return await events.__anext__()


async def _drive(builder: ResponseBuilder, first: Any, events: AsyncIterator[Any]) -> AsyncIterator[dict[str, Any]]:
    for out in builder.feed(first):
        yield out
    async for event in events:
        for out in builder.feed(event):
            yield out


async def _finish(
    store: ConversationStore, conversation: Conversation, builder: ResponseBuilder, req: ResponsesRequest
) -> None:
    conversation.call_ids.update({client: loop for loop, client in builder.client_call_ids.items()})
    result = conversation.session.last_result
    if req.store and result is not None:
        await store.put(builder.id, Stored(conversation, result, builder.response()))
    elif req.previous_response_id is None:
        await conversation.session.aclose()


async def _sse(
    config: ServerConfig,
    store: ConversationStore,
    conversation: Conversation,
    builder: ResponseBuilder,
    first: Any,
    events: AsyncIterator[Any],
    req: ResponsesRequest,
) -> AsyncIterator[dict[str, str]]:
    finished = False
    # The run's events and, with --approve, approval requests (sent from the session's thread) share one queue.
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def pump() -> None:
        try:
            async for out in _drive(builder, first, events):
                await queue.put(("out", out))
            await queue.put(("end", None))
        except Exception as exc:  # handed to the stream, which raises it
            await queue.put(("error", exc))

    if conversation.gate is not None:
        conversation.gate.attach(lambda event: loop.call_soon_threadsafe(queue.put_nowait, ("out", event)))
    running = asyncio.ensure_future(pump())
    try:
        for out in builder.created():
            yield {"event": out["type"], "data": json.dumps(out)}
        while True:
            kind, item = await queue.get()
            if kind == "end":
                break
            if kind == "error":
                raise item
            yield {"event": item["type"], "data": json.dumps(item)}
        await _finish(store, conversation, builder, req)
        finished = True
    finally:
        if conversation.gate is not None:
            conversation.gate.detach()  # nobody is left to ask: what is pending is denied
        if not finished:
            # The client went away mid-stream: its run is cancelled and its session released.
            running.cancel()
            with contextlib.suppress(BaseException):
                await running
            await events.aclose()
            await conversation.session.aclose()


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
