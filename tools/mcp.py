"""``MCPTools``: the tools of any MCP server, offered to gpt-oss as harmony functions.

A spec names the server: ``stdio:COMMAND ARGS…`` starts it as a subprocess,
``http(s)://host:port/mcp`` speaks streamable HTTP, and a URL ending in
``/sse`` (or prefixed ``sse:``) speaks the older SSE transport. The official
``mcp`` SDK does all of the protocol.

The server's tools are listed once when the tool is built (the agent's router
needs the names before any session starts) and again when a session connects.
Their raw JSON Schemas are offered; the agent normalises every description for
harmony when it renders the preamble. Calls go to the server; text, images
(saved to files, listed in the result's ``images``) and structured content come
back. A server error is a tool error the model reads. A crashed server is one
too, and the next call starts it again.

``notifications/tools/list_changed`` marks the listing stale; it is fetched
again before the next call answers. The model learns of the change in that
call's result (tools added, tools removed); a removed tool is refused with the
list of what the server offers now, and the next conversation's preamble shows
the new list. A tool added in a namespace of the server's own is callable at
once (the router hands a built-in namespace every name in it), and so is one
added to ``functions``: a name the router does not know makes it ask the
tools to :meth:`relist`, which fetches a stale listing then and there.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import concurrent.futures
import contextlib
import json
import mimetypes
import re
import shlex
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openai_harmony import ToolDescription, ToolNamespaceConfig

from harmony_agent.tools.base import FUNCTIONS_NAMESPACE, Tool, ToolCall, ToolError, ToolResult, parse_arguments

_NAMESPACE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_STDERR_TAIL_CHARS = 1500
_GROUP: Any = getattr(builtins, "BaseExceptionGroup", ())  # Python 3.11+; anyio raises these


@dataclass(frozen=True)
class ServerSpec:
    """Where an MCP server is: ``kind`` is ``stdio``, ``http`` or ``sse``; ``command`` for stdio, ``url`` otherwise."""

    kind: str
    command: tuple[str, ...] = ()
    url: str = ""

    @property
    def label(self) -> str:
        return " ".join(self.command) if self.kind == "stdio" else self.url


def parse_spec(spec: str) -> ServerSpec:
    """``stdio:COMMAND ARGS…``, ``http(s)://…`` (streamable HTTP; ``…/sse`` means SSE) or ``sse:http(s)://…``."""
    text = spec.strip()
    if text.startswith("stdio:"):
        try:
            command = tuple(shlex.split(text[len("stdio:") :]))
        except ValueError as exc:
            raise ValueError(f"MCP spec {spec!r}: cannot split the command ({exc})") from None
        if not command:
            raise ValueError(f"MCP spec {spec!r} names no command: write stdio:COMMAND ARGS…")
        return ServerSpec("stdio", command=command)
    if text.startswith("sse:"):
        url = text[len("sse:") :]
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"MCP spec {spec!r}: sse: must be followed by an http(s) URL")
        return ServerSpec("sse", url=url)
    if text.startswith(("http://", "https://")):
        return ServerSpec("sse" if text.rstrip("/").endswith("/sse") else "http", url=text)
    raise ValueError(
        f"unknown MCP server spec {spec!r}: use stdio:COMMAND ARGS…, http(s)://HOST:PORT/mcp, or an SSE URL"
    )


def harmony_names(names: list[str]) -> dict[str, str]:
    """Harmony-safe function names for the server's tool names (``a.b/c`` -> ``a_b_c``), unique; maps back."""
    mapping: dict[str, str] = {}
    for name in names:
        safe = _NAME_UNSAFE.sub("_", name) or "tool"
        candidate, n = safe, 2
        while candidate in mapping:
            candidate, n = f"{safe}_{n}", n + 1
        mapping[candidate] = name
    return mapping


class MCPTools(Tool):
    """The tools of one MCP server, as function tools (or a namespace of their own).

    ``spec`` is a server spec (see :func:`parse_spec`). ``namespace`` None puts
    the tools in harmony's ``functions`` namespace (the developer message);
    a name makes them a built-in namespace of the system message, described
    by the server's instructions. ``mode`` is the SDK client's handshake:
    ``legacy`` (the default: the ``initialize`` handshake every server speaks)
    or ``auto``. ``images`` is the folder where images a tool returns are
    saved (a temporary one by default). ``env``/``cwd`` apply to a stdio
    server's process only.

    ``shared`` says who owns the connection. False (the default): each session
    of an agent gets a connection of its own (a stdio server process of its
    own), opened at its first call and closed with the session. True: one
    connection serves every session of the agent (one server process, its
    state seen by all); a session's closing leaves it open, and it is closed
    with the agent, or by whoever entered it (``async with``/``with``).
    Either way the connection lives on harmony-agent's runtime, so a tool
    started on your own loop (``await tool.start()``, ``async with tool``)
    works inside ``await agent.arun(...)`` and from any thread.
    """

    def __init__(
        self,
        spec: str,
        namespace: str | None = None,
        *,
        call_timeout: float = 120.0,
        connect_timeout: float = 30.0,
        mode: str = "legacy",
        images: str | Path | None = None,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        shared: bool = False,
    ) -> None:
        self.spec_text = spec
        self.shared = shared
        self.spec = parse_spec(spec)
        if namespace is not None and not _NAMESPACE.match(namespace):
            raise ValueError(f"MCP namespace {namespace!r} must be a name of letters, digits, _ and -")
        self.namespace = namespace or FUNCTIONS_NAMESPACE
        self.namespace_description = ""
        self.call_timeout = call_timeout
        self.connect_timeout = connect_timeout
        self.mode = mode
        self.images_dir = Path(images) if images else None
        self.env = dict(env) if env is not None else None
        self.cwd = str(cwd) if cwd is not None else None
        self.server_name = ""
        self._listing: list[Any] | None = None  # mcp Tool objects, as the server last listed them
        self._names: dict[str, str] = {}  # harmony name -> the server's name
        self._seen: set[str] = set()  # every harmony name the server has offered, to tell "removed" from "never was"
        self._client: Any = None
        self._runner: asyncio.Task | None = None
        self._stop: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._stale = False
        self._notes: list[str] = []
        self._errlog: Any = None
        self._restarts = 0
        self._images = 0

    def __repr__(self) -> str:
        return f"MCPTools({self.spec_text!r}, namespace={self.namespace!r})"

    # -- description -----------------------------------------------------------

    def fresh(self) -> MCPTools:
        """For another session: this very tool when ``shared``, else an unconnected copy that knows the tools
        listed so far (no second probe)."""
        if self.shared:
            return self
        copy = MCPTools(
            self.spec_text,
            None if self.namespace == FUNCTIONS_NAMESPACE else self.namespace,
            call_timeout=self.call_timeout,
            connect_timeout=self.connect_timeout,
            mode=self.mode,
            images=self.images_dir,
            env=self.env,
            cwd=self.cwd,
        )
        if self._listing is not None:
            copy._set_listing(list(self._listing), self.server_name, self.namespace_description)
        return copy

    def descriptions(self) -> list[ToolDescription]:
        if self._listing is None:
            self._probe()
        by_server = {tool.name: tool for tool in self._listing or []}
        return [
            ToolDescription.new(
                name, by_server[original].description or "", parameters=by_server[original].input_schema
            )
            for name, original in self._names.items()
        ]

    def namespace_config(self) -> ToolNamespaceConfig | None:
        if not self.is_builtin:
            return None
        return ToolNamespaceConfig(
            name=self.namespace, description=self.namespace_description, tools=self.descriptions()
        )

    def recipients(self) -> list[str]:
        return [f"{self.namespace}.{d.name}" for d in self.descriptions()]

    def _set_listing(self, tools: list[Any], server_name: str, instructions: str | None) -> None:
        self._listing = tools
        self._names = harmony_names([tool.name for tool in tools])
        self._seen.update(self._names)
        self.server_name = server_name
        if self.is_builtin:
            self.namespace_description = instructions or f"Tools of the MCP server {server_name or self.spec.label}."

    def _probe(self) -> None:
        """List the tools before any session exists: connect on a loop of our own in a worker thread, then hang up."""

        async def probe() -> tuple[list[Any], str, str | None]:
            async with self._client_for(None) as client:
                return await self._list_all(client), _server_name(client), client.instructions

        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mcp-probe") as pool:
            future = pool.submit(asyncio.run, _bounded(probe(), self.connect_timeout))
            try:
                tools, name, instructions = future.result()
            except Exception as exc:
                raise ToolError(
                    f"cannot list the tools of MCP server {self.spec.label}: {_describe(exc)}{self._stderr_tail()}"
                ) from None
        self._set_listing(tools, name, instructions)

    # -- connection ------------------------------------------------------------

    def _client_for(self, handler: Any) -> Any:
        from mcp import Client, StdioServerParameters
        from mcp.client.sse import sse_client
        from mcp.client.stdio import stdio_client

        if self.spec.kind == "stdio":
            if self._errlog is None:
                self._errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
            self._errlog.seek(0)
            self._errlog.truncate()  # a new process: only its own stderr explains its failure
            params = StdioServerParameters(
                command=self.spec.command[0], args=list(self.spec.command[1:]), env=self.env, cwd=self.cwd
            )
            server: Any = stdio_client(params, errlog=self._errlog)
        elif self.spec.kind == "sse":
            server = sse_client(self.spec.url, timeout=self.connect_timeout)
        else:
            server = self.spec.url
        return Client(server, mode=self.mode, message_handler=handler, cache=None)

    @staticmethod
    async def _list_all(client: Any) -> list[Any]:
        tools: list[Any] = []
        cursor = None
        for _ in range(100):  # a paginator that never ends must not hang the agent
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def start(self) -> str:
        """Connect now (on the runtime, from any loop) and list the tools; returns a line saying what the server offers."""
        await self._ensure_connected()
        return f"MCP server {self.server_name or self.spec.label}: {len(self._names)} tools ({', '.join(self._names)})"

    async def _ensure_connected(self) -> Any:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is not None and self._runner is not None and not self._runner.done():
                return self._client
            await self._disconnect()
            loop = asyncio.get_running_loop()
            ready: asyncio.Future = loop.create_future()
            self._stop = asyncio.Event()
            self._runner = asyncio.create_task(self._hold(ready, self._stop), name=f"mcp {self.spec.label}")
            try:
                await asyncio.wait_for(asyncio.shield(ready), self.connect_timeout)
            except asyncio.TimeoutError:
                await self._disconnect()
                raise ToolError(
                    f"MCP server {self.spec.label} did not answer within {self.connect_timeout:g} s"
                    f"{self._stderr_tail()}"
                ) from None
            except Exception as exc:
                await self._disconnect()
                raise ToolError(
                    f"cannot connect to MCP server {self.spec.label}: {_describe(exc)}{self._stderr_tail()}"
                ) from None
            return self._client

    async def _hold(self, ready: asyncio.Future, stop: asyncio.Event) -> None:
        """Keep the SDK client's async context open in this one task until asked to stop (anyio wants one task)."""
        try:
            async with self._client_for(self._on_message) as client:
                tools = await self._list_all(client)
                self._note_changes(tools)
                self._set_listing(tools, _server_name(client), client.instructions)
                self._client = client
                self._stale = False
                async with contextlib.AsyncExitStack() as stack:
                    watcher = await self._listen(client, stack)
                    if not ready.done():
                        ready.set_result(None)
                    try:
                        await stop.wait()
                    finally:
                        if watcher is not None:
                            watcher.cancel()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._client = None

    async def _listen(self, client: Any, stack: contextlib.AsyncExitStack) -> asyncio.Task | None:
        """On the 2026 protocol, change notifications come only on a subscription the client opens."""
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS

        tools = getattr(client.server_capabilities, "tools", None)
        if client.protocol_version not in MODERN_PROTOCOL_VERSIONS or tools is None or not tools.list_changed:
            return None
        subscription = await stack.enter_async_context(client.listen(tools_list_changed=True))

        async def watch() -> None:
            with contextlib.suppress(Exception):
                async for _event in subscription:
                    self._stale = True

        return asyncio.create_task(watch())

    async def _on_message(self, message: Any) -> None:
        from mcp.types import ToolListChangedNotification

        root = getattr(message, "root", message)
        if isinstance(root, ToolListChangedNotification):
            self._stale = True

    async def _disconnect(self) -> None:
        runner, stop = self._runner, self._stop
        self._runner = self._stop = None
        self._client = None
        if runner is None:
            return
        if stop is not None:
            stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(runner), 10)
        except BaseException:
            runner.cancel()
            with contextlib.suppress(BaseException):
                await runner

    async def aclose(self) -> None:
        await self._disconnect()
        if self._errlog is not None:
            self._errlog.close()
            self._errlog = None

    # -- tool list changes -----------------------------------------------------

    def _note_changes(self, tools: list[Any]) -> None:
        """Remember, for the model, how a new listing differs from the one it was shown."""
        if self._listing is None:
            return
        before = {tool.name for tool in self._listing}
        after = {tool.name: tool for tool in tools}
        added = [name for name in after if name not in before]
        removed = sorted(before - set(after))
        if not added and not removed:
            return
        prefix = f"{self.namespace}."
        parts = []
        if added:
            names = harmony_names(list(after))
            back = {original: safe for safe, original in names.items()}
            parts.append(
                "new tools: "
                + "; ".join(f"{prefix}{back[name]} ({_first_line(after[name].description)})" for name in added)
            )
        if removed:
            parts.append("removed: " + ", ".join(prefix + _NAME_UNSAFE.sub("_", name) for name in removed))
        self._notes.append(
            f"[note: MCP server {self.server_name or self.spec.label} changed its tools: {'; '.join(parts)}]"
        )

    async def _refresh(self, client: Any) -> None:
        tools = await self._list_all(client)
        self._note_changes(tools)
        self._set_listing(tools, self.server_name, self.namespace_description or None)
        self._stale = False

    async def relist(self) -> bool:
        """After a ``list_changed`` notification, fetch the listing now (the router met a name it did not know)."""
        if not self._stale or self._client is None:
            return False
        before = dict(self._names)
        try:
            await self._refresh(await self._ensure_connected())
        except Exception:  # the listing stays as it was; the call is refused as unknown, and the next one retries
            return False
        return self._names != before

    # -- calls -----------------------------------------------------------------

    async def _process(self, call: ToolCall) -> ToolResult:
        from mcp.shared.exceptions import MCPError
        from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        client = await self._ensure_connected()
        if self._stale:
            try:
                await self._refresh(client)
            except Exception:  # the listing stays as it was; the call below says what went wrong, if anything
                pass
        original = self._names.get(call.name)
        if original is None:
            known = ", ".join(f"{self.namespace}.{name}" for name in self._names) or "none"
            gone = " any more (it changed its tools)" if call.name in self._seen else ""
            raise ToolError(
                self._with_notes(
                    f"MCP server {self.server_name or self.spec.label} has no tool "
                    f"{call.name!r}{gone}; it offers: {known}"
                )
            )
        arguments = parse_arguments(call)
        try:
            result = await client.call_tool(original, arguments, read_timeout_seconds=self.call_timeout)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED or self._runner is None or self._runner.done():
                return await self._crashed(exc)
            if exc.code == REQUEST_TIMEOUT:
                raise ToolError(
                    self._with_notes(
                        f"the MCP tool {original!r} gave no answer within {self.call_timeout:g} s; "
                        "the call was abandoned"
                    )
                ) from None
            raise ToolError(self._with_notes(f"the MCP server refused the call: {exc.error.message}")) from None
        except (OSError, EOFError) as exc:
            return await self._crashed(exc)
        except Exception as exc:
            if _is_transport_failure(exc) or self._runner is None or self._runner.done():
                return await self._crashed(exc)
            raise
        return self._convert(result)

    async def _crashed(self, exc: BaseException) -> ToolResult:
        await self._disconnect()
        self._restarts += 1
        return ToolResult(
            error=self._with_notes(
                f"the MCP server {self.spec.label} stopped answering ({_describe(exc)}){self._stderr_tail()}. "
                "It will be started again at the next call; anything it held in memory is gone."
            )
        )

    def _with_notes(self, text: str) -> str:
        notes, self._notes = self._notes, []
        return "\n".join([text, *notes]) if notes else text

    def _convert(self, result: Any) -> ToolResult:
        """The model's view of a CallToolResult: texts, resource texts, images saved as files, structured content as JSON."""
        parts: list[str] = []
        images: list[str] = []
        for block in result.content or []:
            kind = getattr(block, "type", "")
            if kind == "text":
                parts.append(block.text)
            elif kind in ("image", "audio"):
                path = self._save(block.data, block.mime_type, kind)
                images.append(str(path)) if kind == "image" else None
                parts.append(f"[{kind} {block.mime_type} saved to {path}]")
            elif kind == "resource":
                resource = block.resource
                if getattr(resource, "text", None) is not None:
                    parts.append(f"[resource {resource.uri}]\n{resource.text}")
                else:
                    path = self._save(resource.blob, resource.mime_type or "application/octet-stream", "resource")
                    parts.append(f"[resource {resource.uri} saved to {path}]")
            elif kind == "resource_link":
                about = f" - {block.description}" if block.description else ""
                parts.append(f"[resource link {block.uri}: {block.name}{about}]")
            else:
                parts.append(f"[{kind or 'unknown'} content]")
        structured = result.structured_content
        if structured is not None and not any(parts):
            parts.append(json.dumps(structured, ensure_ascii=False))
        text = self._with_notes("\n".join(parts))
        metadata: dict[str, Any] = {"server": self.server_name or self.spec.label}
        if structured is not None:
            metadata["structured"] = structured
        if result.is_error:
            return ToolResult(
                error=text or "the MCP tool reported an error without a message",
                images=tuple(images),
                metadata=metadata,
            )
        return ToolResult(output=text or "[the tool returned no content]", images=tuple(images), metadata=metadata)

    def _save(self, data: str, mime_type: str, kind: str) -> Path:
        if self.images_dir is None:
            self.images_dir = Path(tempfile.mkdtemp(prefix="harmony-agent-mcp-"))
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self._images += 1
        suffix = mimetypes.guess_extension(mime_type or "") or ".bin"
        path = self.images_dir / f"{kind}-{self._images:04d}-{int(time.time() * 1000)}{suffix}"
        try:
            path.write_bytes(base64.b64decode(data, validate=False))
        except (ValueError, TypeError):
            path.write_bytes(b"")
        return path

    def _stderr_tail(self) -> str:
        if self._errlog is None:
            return ""
        try:
            self._errlog.flush()
            self._errlog.seek(0, 2)
            size = self._errlog.tell()
            self._errlog.seek(max(0, size - _STDERR_TAIL_CHARS * 2))
            tail = self._errlog.read()[-_STDERR_TAIL_CHARS:].strip()
        except (OSError, ValueError):
            return ""
        return f"\nThe server's last words (stderr):\n{tail}" if tail else ""


def _first_line(description: str | None) -> str:
    lines = (description or "").strip().splitlines()
    return lines[0] if lines else "no description"


def _server_name(client: Any) -> str:
    info = getattr(client, "server_info", None)
    return getattr(info, "name", "") or ""


async def _bounded(coroutine: Any, seconds: float) -> Any:
    return await asyncio.wait_for(coroutine, seconds)


def _describe(exc: BaseException) -> str:
    """One line for an exception, looking inside the exception groups anyio raises."""
    while isinstance(exc, _GROUP) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _is_transport_failure(exc: BaseException) -> bool:
    import anyio

    while isinstance(exc, _GROUP) and exc.exceptions:
        exc = exc.exceptions[0]
    return isinstance(exc, (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, ConnectionError))
