"""Every connection the browser makes goes through a proxy that connects only where the policy allows.

This is the one place the browser's connections are checked. A page's own
requests, each redirect hop, a popup's first request, WebSockets opened from
workers, speculative preconnects and prefetches all go through a context's
proxy (DevTools request interception would miss several of them), and
through a proxy Chromium does not resolve names at all, so a name cannot lead
somewhere else by the time it connects (DNS rebinding). So each browser
session gets this small forward proxy on 127.0.0.1: it asks the policy about
every request (plain HTTP) and every tunnel (``CONNECT``, used for HTTPS and
WebSockets), and connects only to the addresses the policy checked. What it
refuses it reports to the session, which tells the model when the tab lands
on a refused page.

HTTP/1.1 framing on both sides is h11's; this module only routes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit

import h11

from harmony_agent.tools.browser.policy import NavigationPolicy

#: Headers that describe one hop, not the message: never forwarded.
HOP_HEADERS = {
    b"connection",
    b"proxy-connection",
    b"keep-alive",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"proxy-authorization",
    b"proxy-authenticate",
}
CONNECT_TIMEOUT = 10.0
#: What a refused page or frame shows (the model is told the reason in words).
REFUSED_PAGE = b"<!doctype html><title>Refused</title><h1>Navigation refused by policy</h1>"
READ_SIZE = 65536


class Refused(Exception):
    """The policy refused a target; the text is why."""


async def _open(
    policy: NavigationPolicy, url: str, host: str, port: int, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to ``host:port`` at an address the policy checked for ``url`` (resolving off the event loop)."""
    reason, addresses = await policy.vet_async(url, top_level=False)
    if reason is not None:
        raise Refused(reason)
    last: Exception | None = None
    for address in addresses or [host]:
        try:
            return await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            last = exc
    raise ConnectionError(f"could not connect to {host}:{port}: {last}")


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await reader.read(READ_SIZE))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError, RuntimeError):
        writer.write_eof()


class PolicyProxy:
    """A forward proxy on 127.0.0.1 for one browser session; ``refused`` counts what it turned away."""

    def __init__(
        self,
        policy: NavigationPolicy,
        on_refused: Callable[[str, str], None] | None = None,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.on_refused = on_refused
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        assert self._server is not None, "the proxy is not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> PolicyProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.wait(self._clients, timeout=2)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, ConnectionError, ValueError, h11.ProtocolError, asyncio.IncompleteReadError):
            pass  # the browser hung up or spoke nonsense: nothing to answer
        except asyncio.CancelledError:
            pass  # the proxy is closing: a task of its own ends quietly
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _refuse(self, target: str, reason: str) -> None:
        self.refused += 1
        if self.on_refused is not None:
            self.on_refused(target, reason)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests from one browser connection, in turn, until either side closes it."""
        client = h11.Connection(h11.SERVER)
        while True:
            request = await _next_event(client, reader)
            if not isinstance(request, h11.Request):
                return
            if request.method == b"CONNECT":
                await self._tunnel(client, request, reader, writer)
                return
            await self._forward(client, request, reader, writer)
            if client.our_state is h11.MUST_CLOSE or client.their_state is h11.MUST_CLOSE:
                return
            client.start_next_cycle()

    async def _send(self, client: h11.Connection, writer: asyncio.StreamWriter, *events: h11.Event) -> None:
        for event in events:
            writer.write(client.send(event) or b"")
        await writer.drain()

    async def _tunnel(
        self, client: h11.Connection, request: h11.Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """``CONNECT host:port``: HTTPS and WebSockets. Only the host and port are known, so that is what is checked."""
        await _read_body(client, reader)  # a CONNECT has no body, but h11 must see its end before the switch
        target = request.target.decode("latin-1")
        host, _, port_text = target.rpartition(":")
        url = f"https://{host}:{port_text}/"
        try:
            upstream_reader, upstream_writer = await _open(
                self.policy, url, host.strip("[]"), int(port_text), self.connect_timeout
            )
        except Refused as exc:  # all a refused tunnel can say: Chromium shows its error page, the session says why
            self._refuse(target, str(exc))
            await self._send(client, writer, _error(403, "Refused by policy"), h11.EndOfMessage())
            return
        except (ValueError, ConnectionError) as exc:
            await self._send(client, writer, _error(502, str(exc)), h11.EndOfMessage())
            return
        await self._send(client, writer, h11.Response(status_code=200, headers=[], reason=b"Connection established"))
        early, _ = client.trailing_data
        if early:
            upstream_writer.write(early)
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            upstream_writer.close()

    async def _forward(
        self, client: h11.Connection, request: h11.Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """A plain HTTP request in absolute form: checked as a URL, sent on a fresh connection to a checked address."""
        url = request.target.decode("latin-1")
        parts = urlsplit(url)
        body = await _read_body(client, reader)
        if parts.scheme != "http" or not parts.hostname:
            await self._send(client, writer, _error(400, "the proxy takes absolute http:// URLs"), h11.EndOfMessage())
            return
        try:
            upstream_reader, upstream_writer = await _open(
                self.policy, url, parts.hostname, parts.port or 80, self.connect_timeout
            )
        except Refused as exc:
            # Answered with a page that says so: a page or a frame shows it (the session tells the model why), and
            # a subresource just fails.
            self._refuse(url, str(exc))
            refused = h11.Response(
                status_code=403,
                reason=b"Refused by policy",
                headers=[(b"content-type", b"text/html"), (b"content-length", str(len(REFUSED_PAGE)).encode())],
            )
            await self._send(client, writer, refused, h11.Data(data=REFUSED_PAGE), h11.EndOfMessage())
            return
        except ConnectionError as exc:
            await self._send(client, writer, _error(502, str(exc)), h11.EndOfMessage())
            return
        try:
            await self._relay(client, writer, request, body, upstream_reader, upstream_writer, parts)
        finally:
            upstream_writer.close()

    async def _relay(
        self,
        client: h11.Connection,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        body: bytes,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
        parts: SplitResult,
    ) -> None:
        upstream = h11.Connection(h11.CLIENT)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [(name, value) for name, value in request.headers if name.lower() not in HOP_HEADERS]
        headers.append((b"connection", b"close"))
        if body and not any(name.lower() == b"content-length" for name, _ in headers):
            headers.append((b"content-length", str(len(body)).encode()))
        outgoing: list[h11.Event] = [h11.Request(method=request.method, target=path.encode("latin-1"), headers=headers)]
        if body:
            outgoing.append(h11.Data(data=body))
        outgoing.append(h11.EndOfMessage())
        for message in outgoing:
            upstream_writer.write(upstream.send(message) or b"")
        await upstream_writer.drain()
        head_sent = False
        while True:
            event = await _next_event(upstream, upstream_reader)
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                kept = [(n, v) for n, v in event.headers if n.lower() not in HOP_HEADERS]
                await self._send(
                    client, writer, h11.Response(status_code=event.status_code, headers=kept, reason=event.reason)
                )
                head_sent = True
            elif isinstance(event, h11.Data):
                await self._send(client, writer, h11.Data(data=event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                if head_sent:
                    await self._send(client, writer, h11.EndOfMessage())
                else:
                    await self._send(
                        client, writer, _error(502, "the server closed without answering"), h11.EndOfMessage()
                    )
                return


async def _read_body(client: h11.Connection, reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        event = await _next_event(client, reader)
        if isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(chunks)
        else:
            raise h11.RemoteProtocolError("the request ended early")


def _error(status: int, text: str) -> h11.Response:
    return h11.Response(
        status_code=status,
        headers=[(b"content-type", b"text/plain"), (b"content-length", b"0")],
        reason=" ".join(text.split()).encode("latin-1", "replace")[:200],
    )
