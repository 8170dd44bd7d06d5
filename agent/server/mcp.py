"""Our python, browser and computer tools, served to any MCP client.

``harmony-agent mcp serve --tools python,browser`` runs an MCP server (the
``mcp`` SDK's low-level ``Server``: the tools keep the exact names, descriptions
and JSON Schemas gpt-oss was trained on, which the SDK's decorator server would
rewrite from Python signatures).

gpt-oss deployments that take built-in tools from MCP servers (the gpt-oss
reference's system-prompt builder, vLLM's tool server) make one harmony
namespace per server: its name is the server's name, its description the
server's instructions, its functions the listed tools. So a server of one tool
is named after it (``browser``, ``python``) and its instructions are harmony's
own description of that namespace; ``tests/test_mcp_server.py`` checks that
the system prompt built that way renders to the same harmony text as the one
the model was trained on (with ``browser_actions=False``: only ``search``,
``open`` and ``find``; with the actions, to what our own agent renders). Serving several tools in one server works for any
MCP client; it is named ``harmony-agent``.

State is per MCP session: a stdio server's process is one session, and each
streamable-HTTP session (``Mcp-Session-Id``) gets its own tool instances, made at its first call
and closed when the connection closes, so two clients never share a kernel,
a browser's cursor stack or a display. A 2026-era HTTP request without a
session can name one with the ``x-session-id`` header (what vLLM sends);
such sessions end after ``idle_seconds`` without a call.

Nothing a client opens outlives it for long: an HTTP session with no request
in flight for ``idle_seconds`` (a client that went away without closing) is
ended by the SDK's session manager, and what it held (kernel, browser
context, display) is released with it; at most ``max_sessions`` sessions
(and as many named ones) are open at once, and a client past the cap is
refused with a clear error instead of starting yet another kernel.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import mimetypes
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
from openai_harmony import ToolDescription, ToolNamespaceConfig

from harmony_agent.tools.base import Tool, ToolCall, ToolResult

log = logging.getLogger("harmony_agent.mcp_server")

SERVABLE = ("python", "browser", "computer")
SESSION_HEADER = "x-session-id"
_STATE_KEY = "harmony_agent.tools"
COMPUTER_DESCRIPTION = (
    "Mouse, keyboard and a text view of a virtual desktop. Call observe to see the windows and "
    "the text on screen with the points to click, then act with the other functions."
)


class ServedTool:
    """One kind of our tools as MCP tools: their listing, and how a call becomes a harmony ToolCall."""

    def __init__(self, kind: str, factory: Callable[[], Tool], prefix: str = "", browser_actions: bool = True) -> None:
        self.kind = kind
        self.factory = factory
        template = factory()  # constructors start nothing: this only reads descriptions
        self.description = _namespace_description(kind, template)
        self.functions: dict[str, ToolDescription] = {}
        if kind == "python":
            schema = {
                "type": "object",
                "properties": {"code": {"type": "string", "description": "The Python code to run."}},
                "required": ["code"],
            }
            self.functions["python"] = ToolDescription.new("python", self.description, parameters=schema)
        else:
            trained = {d.name for d in ToolNamespaceConfig.browser().tools}
            for description in template.descriptions():
                if kind == "browser" and not browser_actions and description.name not in trained:
                    continue
                self.functions[prefix + description.name] = description
        self.prefix = prefix

    def call_for(self, name: str, arguments: Mapping[str, Any]) -> ToolCall:
        if self.kind == "python":
            return ToolCall("python", "analysis", str(arguments.get("code", "")))
        function = name[len(self.prefix) :]
        recipient = f"browser.{function}" if self.kind == "browser" else f"functions.{function}"
        return ToolCall(recipient, "analysis" if self.kind == "browser" else "commentary", json.dumps(dict(arguments)))


def _namespace_description(kind: str, template: Tool) -> str:
    if kind == "python":
        return template.namespace_description
    if kind == "browser":
        return ToolNamespaceConfig.browser().description
    return COMPUTER_DESCRIPTION


class SessionTools:
    """The tool instances of one MCP session, made at first use and closed together."""

    def __init__(self, served: Mapping[str, ServedTool]) -> None:
        self.served = served
        self.tools: dict[str, Tool] = {}
        self.last_used = time.monotonic()
        self._lock = asyncio.Lock()
        self.closed = False
        #: Where tools that copy files out of a sandbox (python's figures) put them, to be sent as image content.
        self.output_dir: Path | None = None

    async def get(self, kind: str) -> Tool:
        async with self._lock:
            if kind not in self.tools:
                tool = self.served[kind].factory()
                if hasattr(tool, "output_dir") and tool.output_dir is None:
                    self.output_dir = self.output_dir or Path(tempfile.mkdtemp(prefix="harmony-agent-mcp-files-"))
                    tool.output_dir = self.output_dir
                self.tools[kind] = tool
                line = await tool.start()
                if line:
                    log.info("%s", line)
            return self.tools[kind]

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        for kind, tool in list(self.tools.items()):
            try:
                await tool.aclose()
            except Exception as exc:  # one tool failing to close must not keep the others open
                log.warning("closing the %s tool failed: %s", kind, exc)
        self.tools.clear()
        if self.output_dir is not None:  # the images were sent to the client as content
            shutil.rmtree(self.output_dir, ignore_errors=True)


#: Told to a client whose call has no session to live in; its tools are closed when the call ends.
ONE_CALL_NOTE = (
    "[note: this request came without an MCP session (no Mcp-Session-Id, no x-session-id header), "
    "so nothing it set up (python variables, open pages) is kept for the next call]"
)


class ToolServer:
    """Builds the MCP server for some of our tools, and keeps one :class:`SessionTools` per MCP session."""

    def __init__(
        self,
        factories: Mapping[str, Callable[[], Tool]],
        *,
        idle_seconds: float = 900.0,
        max_sessions: int = 32,
        browser_actions: bool = True,
    ) -> None:
        if not idle_seconds > 0 or max_sessions < 1:
            raise ValueError("idle_seconds must be positive and max_sessions at least 1")
        unknown = sorted(set(factories) - set(SERVABLE))
        if unknown or not factories:
            raise ValueError(f"cannot serve {unknown or 'no tools'}: choose from {', '.join(SERVABLE)}")
        kinds = [kind for kind in SERVABLE if kind in factories]
        self.served: dict[str, ServedTool] = {}
        for kind in kinds:
            # The computer's click and scroll would clash with the browser's: prefix them when both are served.
            prefix = "computer_" if kind == "computer" and "browser" in kinds else ""
            self.served[kind] = ServedTool(kind, factories[kind], prefix, browser_actions)
        self.by_function = {name: served for served in self.served.values() for name in served.functions}
        self.name = kinds[0] if len(kinds) == 1 else "harmony-agent"
        self.instructions = (
            self.served[kinds[0]].description
            if len(kinds) == 1
            else "\n\n".join(f"# {kind}\n{self.served[kind].description}" for kind in kinds)
        )
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self._named: dict[str, SessionTools] = {}
        self._process: SessionTools | None = None  # over stdio the process is the session
        self.server = self._build()

    # -- the MCP server --------------------------------------------------------

    def _build(self) -> Any:
        from mcp.server.lowlevel import Server

        return Server(
            self.name,
            instructions=self.instructions,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            get_tool_input_schema=self._input_schema,
        )

    def listing(self) -> list[Any]:
        from mcp.types import Tool as MCPTool

        tools = []
        for name, served in self.by_function.items():
            description = served.functions[name]
            schema = description.parameters or {"type": "object", "properties": {}}
            # gpt-oss's python takes raw code, not JSON: builders of harmony prompts leave its schema out.
            meta = {"include_in_prompt": False} if served.kind == "python" else None
            tools.append(MCPTool(name=name, description=description.description, input_schema=schema, _meta=meta))
        return tools

    def _input_schema(self, name: str) -> dict[str, Any] | None:
        served = self.by_function.get(name)
        if served is None:
            return None
        return served.functions[name].parameters or {"type": "object", "properties": {}}

    async def _list_tools(self, ctx: Any, params: Any) -> Any:
        from mcp.types import ListToolsResult

        return ListToolsResult(tools=self.listing())

    async def _call_tool(self, ctx: Any, params: Any) -> Any:
        from mcp.types import CallToolResult, TextContent

        served = self.by_function.get(params.name)
        if served is None:
            return CallToolResult(
                content=[
                    TextContent(
                        type="text", text=f"no tool {params.name!r}; this server has {', '.join(self.by_function)}"
                    )
                ],
                is_error=True,
            )
        try:
            session, for_this_call = await self._session_for(ctx)
        except TooManySessions as exc:
            return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
        try:
            tool = await session.get(served.kind)
            result = await tool.process(served.call_for(params.name, params.arguments or {}))
        except Exception as exc:  # the tool could not even start (no sandbox, no browser): the client reads why
            result = ToolResult(error=f"the {served.kind} tool is unavailable: {exc}")
        try:
            return _to_mcp(result, ONE_CALL_NOTE if for_this_call else "")  # images are read before they go
        finally:
            session.last_used = time.monotonic()
            if for_this_call:  # a session for this call alone ends with the call, not with the exchange
                await session.aclose()

    async def _session_for(self, ctx: Any) -> tuple[SessionTools, bool]:
        """This request's SessionTools: the process's (stdio), its connection's, one named by x-session-id, or
        (True) one for this call alone."""
        if self._process is not None:
            return self._process, False
        await self._expire_idle()
        request = getattr(ctx, "request", None)
        # The SDK gives handlers the connection only through the request's session object; it carries the
        # connection's scratch state and the exit stack the SDK unwinds when the connection closes.
        connection = getattr(ctx.session, "_connection", None)
        single = request is not None and _is_single_exchange(ctx)  # a 2026-protocol HTTP request is its own connection
        if connection is not None and not single:
            session = connection.state.get(_STATE_KEY)
            if session is None:
                session = connection.state[_STATE_KEY] = SessionTools(self.served)
                connection.exit_stack.push_async_callback(_shielded_close, session)
            return session, False
        headers = getattr(request, "headers", None)
        named = headers.get(SESSION_HEADER) if headers is not None else None
        if named:
            session = self._named.get(named)
            if session is None or session.closed:
                if len(self._named) >= self.max_sessions:
                    raise TooManySessions(
                        f"this server has {self.max_sessions} sessions open, its limit; a session is closed "
                        f"after {self.idle_seconds:g} s without a call, so try again then"
                    )
                session = self._named[named] = SessionTools(self.served)
            return session, False
        return SessionTools(self.served), True

    async def _expire_idle(self) -> None:
        now = time.monotonic()
        for key, session in list(self._named.items()):
            if now - session.last_used > self.idle_seconds:
                del self._named[key]
                await session.aclose()

    async def aclose(self) -> None:
        """Close the sessions named by header (connection sessions close with their connections)."""
        sessions, self._named = list(self._named.values()), {}
        if self._process is not None:
            sessions.append(self._process)
        for session in sessions:
            await session.aclose()

    # -- running ---------------------------------------------------------------

    async def serve(self, transport: str = "stdio", host: str = "127.0.0.1", port: int = 8000) -> None:
        """Serve until the client hangs up (stdio) or the process is stopped (http)."""
        try:
            if transport == "stdio":
                from mcp.server.stdio import stdio_server

                self._process = SessionTools(self.served)
                async with stdio_server() as (read_stream, write_stream):
                    await self.server.run(read_stream, write_stream, self.server.create_initialization_options())
            elif transport in ("http", "sse"):
                import uvicorn

                app = self.http_app(host) if transport == "http" else self.sse_app(host)
                config = uvicorn.Config(app, host=host, port=port, log_level="warning")
                async with anyio.create_task_group() as group:
                    group.start_soon(self._reap_idle)
                    await uvicorn.Server(config).serve()
                    group.cancel_scope.cancel()
            else:
                raise ValueError(f"unknown transport {transport!r}: use stdio, http or sse")
        finally:
            await self.aclose()

    def http_app(self, host: str = "127.0.0.1") -> Any:
        """The streamable-HTTP app (``/mcp``): sessions end after ``idle_seconds`` idle, at most ``max_sessions``."""
        return self.server.streamable_http_app(
            host=host, session_idle_timeout=self.idle_seconds, max_sessions=self.max_sessions
        )

    async def _reap_idle(self) -> None:
        """Close idle named sessions even when no call comes to notice them."""
        while True:
            await anyio.sleep(max(0.5, min(self.idle_seconds / 2, 30.0)))
            await self._expire_idle()

    def sse_app(self, host: str = "127.0.0.1") -> Any:
        """The SSE transport (``GET /sse``, ``POST /messages/``): what vLLM's tool server and the gpt-oss reference use.

        Each SSE stream is one MCP session, with tools of its own.
        """
        from mcp.server.sse import SseServerTransport
        from mcp.server.transport_security import TransportSecuritySettings
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Mount, Route

        security = None
        if host in ("127.0.0.1", "localhost", "::1"):  # refuse DNS-rebinding pages, as the SDK's own apps do
            security = TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
            )
        sse = SseServerTransport("/messages/", security_settings=security)

        streams = 0

        async def stream(request: Any) -> Response:
            nonlocal streams
            if streams >= self.max_sessions:  # each stream would get tools of its own: refuse before any start
                return JSONResponse(
                    {"error": f"Too many open sessions: this server allows {self.max_sessions} SSE streams at once"},
                    status_code=503,
                )
            streams += 1
            try:
                async with sse.connect_sse(request.scope, request.receive, request._send) as (reader, writer):
                    await self.server.run(reader, writer, self.server.create_initialization_options())
            finally:
                streams -= 1
            return Response()

        routes = [Route("/sse", endpoint=stream, methods=["GET"]), Mount("/messages/", app=sse.handle_post_message)]
        return Starlette(routes=routes)


class TooManySessions(RuntimeError):
    """A new session past ``max_sessions``: the client is told, and nothing is started for it."""


async def _shielded_close(session: SessionTools) -> None:
    """Close a session's tools even while its connection is being cancelled (an idle timeout cancels it)."""
    with anyio.CancelScope(shield=True):
        await session.aclose()


def _is_single_exchange(ctx: Any) -> bool:
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    return getattr(ctx, "protocol_version", None) in MODERN_PROTOCOL_VERSIONS


def _to_mcp(result: ToolResult, note: str = "") -> Any:
    """A ToolResult as an MCP CallToolResult: the text the model would read, and the images as image content."""
    from mcp.types import CallToolResult, ImageContent, TextContent

    text = result.text()
    if note:
        text = f"{text}\n{note}" if text else note
    content: list[Any] = [TextContent(type="text", text=text)]
    for image in result.images:
        path = Path(image)
        try:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
        except OSError:
            continue
        content.append(
            ImageContent(type="image", data=data, mime_type=mimetypes.guess_type(path.name)[0] or "image/png")
        )
    return CallToolResult(content=content, is_error=result.is_error)


def serve(
    factories: Mapping[str, Callable[[], Tool]],
    transport: str = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    browser_actions: bool = True,
    idle_seconds: float = 900.0,
    max_sessions: int = 32,
) -> None:
    """Build the server for these tools and serve it (blocking)."""
    server = ToolServer(
        factories, browser_actions=browser_actions, idle_seconds=idle_seconds, max_sessions=max_sessions
    )
    anyio.run(lambda: server.serve(transport, host, port))


def kinds_from(names: Sequence[str]) -> list[str]:
    """Validated tool kinds from a list such as ``["python", "browser"]``."""
    kinds = [name.strip() for name in names if name.strip()]
    unknown = [kind for kind in kinds if kind not in SERVABLE]
    if unknown or not kinds:
        raise ValueError(f"cannot serve {', '.join(unknown) or 'no tools'}: choose from {', '.join(SERVABLE)}")
    return list(dict.fromkeys(kinds))
