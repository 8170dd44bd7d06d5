"""What every request to ``serve`` must pass before any route sees it.

``serve`` runs code (the python tool) for whoever can reach it, so a web
page in the user's own browser is an attacker too:

- **DNS rebinding**: a page on ``evil.example`` re-points its name at
  127.0.0.1 and talks to the server as a same-origin page. Its requests say
  ``Host: evil.example``; only the bound address, localhost and the names
  the user allows (``--allow-host``) are accepted.
- **Cross-site requests**: a page on another origin can send a ``text/plain``
  POST without a CORS preflight. State-changing requests must be
  ``application/json`` (which a page cannot send cross-origin without a
  preflight) and, when the browser says where they come from (``Origin``),
  come from this server's own origin. Preflights are answered without any
  ``Access-Control-Allow-*`` header, so browsers refuse cross-origin calls.
- **Huge or deep bodies**: a body is read up to ``max_body_bytes`` and its
  JSON must nest at most ``max_json_depth`` deep; past either, a 413 or 400
  with a JSON error comes back before harmony's renderer, pydantic or a
  schema walk can overflow a stack.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}


class RequestGuard:
    """ASGI middleware holding the boundaries in the module's docstring."""

    def __init__(
        self, app: ASGIApp, *, host: str, allow_hosts: Iterable[str], max_body_bytes: int, max_json_depth: int
    ) -> None:
        self.app = app
        self.bound = host.strip("[]").lower()
        self.allowed = {name.strip("[]").lower() for name in allow_hosts} | LOCAL_NAMES | {self.bound}
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method = scope["method"]
        refusal = self._check_headers(method, headers)
        if refusal is not None:
            await _send_error(send, *refusal)
            return
        if method == "OPTIONS":
            # A CORS preflight, answered on purpose without Access-Control-Allow-*: no other origin may call.
            await send({"type": "http.response.start", "status": 204, "headers": [(b"allow", b"GET, POST")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if method not in STATE_CHANGING:
            await self.app(scope, receive, send)
            return
        body, refusal = await self._read_body(headers, receive)
        if refusal is None:
            refusal = self._check_json(body)
        if refusal is not None:
            await _send_error(send, *refusal)
            return
        await self.app(scope, _replay(body, receive), send)

    def _host_allowed(self, host: str) -> bool:
        name = urlsplit("//" + host).hostname if host else None
        if name is None:
            return False
        name = name.lower()
        if name in self.allowed:
            return True
        if self.bound in ("0.0.0.0", "::"):
            # Bound to every interface: any address literal names this machine; a DNS name must be allowed.
            try:
                ipaddress.ip_address(name)
            except ValueError:
                return False
            return True
        return False

    def _check_headers(self, method: str, headers: dict[str, str]) -> tuple[int, str, str] | None:
        host = headers.get("host", "")
        if not self._host_allowed(host):
            return (
                400,
                f"requests to host {host!r} are not accepted (a DNS-rebinding guard); start serve with "
                "--allow-host NAME to accept that name",
                "invalid_host",
            )
        origin = headers.get("origin")
        if origin is not None and (method in STATE_CHANGING or method == "OPTIONS") and not _same_origin(origin, host):
            return 403, f"requests from the origin {origin!r} are not accepted", "forbidden_origin"
        if method in STATE_CHANGING:
            kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if kind != "application/json":
                return (
                    415,
                    "send the request body as JSON, with Content-Type: application/json",
                    "unsupported_media_type",
                )
        return None

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> tuple[bytes, tuple[int, str, str] | None]:
        too_big = (413, f"the request body is over {self.max_body_bytes} bytes", "request_too_large")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return b"", too_big
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", (400, "the client went away before sending its body", "invalid_request_error")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None

    def _check_json(self, body: bytes) -> tuple[int, str, str] | None:
        if not body:
            return None
        try:
            value = json.loads(body)
        except RecursionError:
            value = None
            depth = self.max_json_depth + 1
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # the route says what is wrong with it
        else:
            depth = json_depth(value, self.max_json_depth + 1)
        if depth > self.max_json_depth:
            return 400, f"the request's JSON nests deeper than {self.max_json_depth} levels", "invalid_request_error"
        return None


def _same_origin(origin: str, host: str) -> bool:
    """Whether a browser's ``Origin`` is this server as the request addressed it (host and port both)."""
    try:
        parts, target = urlsplit(origin), urlsplit("//" + host)
        if parts.scheme not in ("http", "https") or parts.hostname is None or target.hostname is None:
            return False
        default = 443 if parts.scheme == "https" else 80
        return parts.hostname == target.hostname and (parts.port or default) == (target.port or default)
    except ValueError:  # a port that is not a number
        return False


def json_depth(value: Any, limit: int) -> int:
    """How deeply ``value`` nests (lists and objects), counted without recursion and no further than ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest >= limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the app the body already read, then waits on the client (for disconnects)."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_error(send: Send, status: int, message: str, code: str) -> None:
    body = json.dumps({"error": {"message": message, "type": code, "code": code}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
