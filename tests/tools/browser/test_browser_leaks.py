"""The browser policy holds for names Chromium resolves itself, unresolvable names, and WebRTC; sessions clean up.

Each leak is checked with servers the test starts on 127.0.0.1 that log every
HTTP request, TCP connection and UDP datagram they get: a refused target must
log nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from harmony_agent.tools import ToolCall
from harmony_agent.tools.browser import BrowserTool, NavigationPolicy
from helpers.available import require
from helpers.logging_servers import ForbiddenServer
from helpers.pages import serve_pages


@pytest.fixture
def forbidden() -> Iterator[ForbiddenServer]:
    logger = ForbiddenServer()
    yield logger
    logger.close()


def test_loopback_names_and_unresolvable_names_are_refused():
    nothing = NavigationPolicy(resolver=lambda host: [])
    for url in (
        "http://localhost./",
        "http://anything.localhost:8080/",
        "http://a.b.localhost./x",
        "http://LOCALHOST.:1/",
    ):
        assert "loopback" in (nothing.check(url) or ""), url
    assert "does not resolve" in nothing.check("http://no-such-name.invalid/")
    named = NavigationPolicy(allow_domains=["intranet.test"], resolver=lambda host: [])
    assert named.check("http://wiki.intranet.test/") is None  # explicitly allowed by name
    assert "deny list" in NavigationPolicy(deny_domains=["example.org"], resolver=lambda host: ["93.184.216.34"]).check(
        "http://example.org./"
    )
    # Allowing 127.0.0.1 does not open localhost names, which may also lead to ::1.
    assert NavigationPolicy(allow_addresses=["127.0.0.1"]).check("http://x.localhost/") is not None


async def test_chromium_never_reaches_a_refused_local_port_through_localhost_names(forbidden):
    require("chromium")
    port = forbidden.port
    page = (
        f'<title>Lures</title><img src="http://localhost.:{port}/img"><img src="http://x.localhost:{port}/img2">'
        f'<iframe src="http://anything.localhost:{port}/frame"></iframe>'
        f'<script>fetch("http://localhost.:{port}/fetch").catch(() => {{}});</script><p>lures set</p>'
    )
    tool = BrowserTool(policy=NavigationPolicy(allow_addresses=["127.0.0.1"]))
    with serve_pages({"/lures": page}) as base:
        for url in (
            f"http://localhost.:{port}/open",
            f"http://anything.localhost:{port}/open",
            f"http://x.localhost.:{port}/",
        ):
            refused = await tool.process(ToolCall("browser.open", "analysis", json.dumps({"id": url})))
            assert refused.is_error and "loopback" in refused.text(), refused.text()
        lured = await tool.process(ToolCall("browser.open", "analysis", json.dumps({"id": f"{base}/lures"})))
        assert "lures set" in lured.text()
        time.sleep(0.5)
        await tool.aclose()
    assert forbidden.connections == []


async def test_webrtc_sends_no_datagrams_under_any_constructor_name(forbidden):
    require("chromium")
    page = (
        """<title>RTC</title><p id="out">starting</p><script>
const names = ["RTCPeerConnection", "webkitRTCPeerConnection"];
const report = [];
for (const name of names) {
  const Ctor = window[name];
  if (typeof Ctor !== "function") { report.push(name + ": none"); continue; }
  try {
    const pc = new Ctor({ iceServers: [{ urls: "stun:127.0.0.1:PORT" }] });
    pc.createDataChannel("x");
    pc.createOffer().then((offer) => pc.setLocalDescription(offer));
    report.push(name + ": made");
  } catch (e) { report.push(name + ": " + e.name); }
}
document.getElementById("out").textContent = report.join("; ");
</script>"""
    ).replace("PORT", str(forbidden.udp_port))
    tool = BrowserTool(policy=NavigationPolicy(allow_domains=["127.0.0.1"], allow_addresses=["127.0.0.1"]))
    with serve_pages({"/rtc": page}) as base:
        view = await tool.process(ToolCall("browser.open", "analysis", json.dumps({"id": f"{base}/rtc"})))
        assert "RTCPeerConnection: none" in view.text() and "webkitRTCPeerConnection: none" in view.text(), view.text()
        time.sleep(2)  # ICE gathering would have sent its STUN requests by now
        await tool.aclose()
    assert forbidden.datagrams == []


async def test_a_sessions_own_downloads_folder_is_removed_on_close_and_a_given_one_kept(tmp_path):
    require("chromium")
    policy = NavigationPolicy(allow_domains=["127.0.0.1"], allow_addresses=["127.0.0.1"])
    own, given = BrowserTool(policy=policy), BrowserTool(policy=policy, downloads=tmp_path / "mine")
    with serve_pages({"/": "<title>x</title><p>hello</p>"}) as base:
        for tool in (own, given):
            await tool.process(ToolCall("browser.open", "analysis", json.dumps({"id": f"{base}/"})))
        folders = (own.session.downloads_dir, given.session.downloads_dir)
        (folders[1]).mkdir(parents=True, exist_ok=True)
        assert folders[0].is_dir()
        await own.aclose()
        await given.aclose()
    assert not folders[0].exists() and folders[1].is_dir()


def _only(base: str) -> NavigationPolicy:
    """A policy that allows the test's page server, and no other port on 127.0.0.1."""
    return NavigationPolicy(allow_addresses=[f"127.0.0.1:{base.rsplit(':', 1)[1]}"])


async def _open_and_wait(tool: BrowserTool, url: str, seconds: float = 2.0) -> str:
    view = await tool.process(ToolCall("browser.open", "analysis", json.dumps({"id": url})))
    time.sleep(seconds)  # let timers, workers and speculative work run
    return view.text()


def test_a_port_can_be_allowed_alone():
    policy = NavigationPolicy(allow_addresses=["127.0.0.1:8000", "[::1]:8000"])
    assert policy.check("http://127.0.0.1:8000/") is None and policy.check("http://[::1]:8000/x") is None
    assert "loopback address (127.0.0.1)" in policy.check("http://127.0.0.1:8001/")
    assert "loopback" in policy.check("http://127.0.0.1/") and "loopback" in policy.check("http://[::1]:8001/")
    with pytest.raises(ValueError, match="allow_addresses"):
        NavigationPolicy(allow_addresses=["127.0.0.1:http"])


async def test_popups_of_every_kind_never_reach_a_refused_port(forbidden):
    require("chromium")
    target = f"http://127.0.0.1:{forbidden.port}"
    page = f"""<title>Popups</title>
<a id="link" target="_blank" href="{target}/link">link</a>
<form id="form" target="_blank" action="{target}/form"><input name="q" value="1"></form>
<script>
window.open("{target}/open");
const blank = window.open("about:blank"); if (blank) setTimeout(() => {{ blank.location = "{target}/later"; }}, 100);
window.open("/bounce");
document.getElementById("link").click();
document.getElementById("form").submit();
</script><p>popups tried</p>"""
    with serve_pages({"/popups": page, "/bounce": f"REDIRECT {target}/redirected"}) as base:
        tool = BrowserTool(policy=_only(base))
        text = await _open_and_wait(tool, f"{base}/popups")
        assert "popups tried" in text or "popup" in text, text
        await tool.aclose()
    assert forbidden.connections == []


async def test_workers_sockets_fetches_and_speculation_never_reach_a_refused_port(forbidden):
    require("chromium")
    target = f"127.0.0.1:{forbidden.port}"
    worker = f"""try {{ new WebSocket("ws://{target}/worker-ws"); }} catch (e) {{}}
fetch("http://{target}/worker-fetch").catch(() => {{}});
onconnect = (e) => {{ fetch("http://{target}/shared-fetch").catch(() => {{}}); try {{ new WebSocket("ws://{target}/shared-ws"); }} catch (e) {{}} }};"""
    page = f"""<title>Around</title>
<link rel="preconnect" href="http://{target}"><link rel="dns-prefetch" href="http://{target}">
<link rel="prefetch" href="http://{target}/prefetch"><link rel="preload" as="image" href="http://{target}/preload">
<script type="speculationrules">{{"prefetch": [{{"source": "list", "urls": ["http://{target}/spec-prefetch"]}}],
 "prerender": [{{"source": "list", "urls": ["http://{target}/spec-prerender"]}}]}}</script>
<iframe src="http://{target}/frame"></iframe>
<script>
new Worker("/worker.js");
try {{ new SharedWorker("/worker.js").port.start(); }} catch (e) {{}}
navigator.sendBeacon && navigator.sendBeacon("http://{target}/beacon", "x");
</script><p>all tried</p>"""
    with serve_pages({"/around": page, "/worker.js": worker}) as base:
        tool = BrowserTool(policy=_only(base))
        assert "all tried" in await _open_and_wait(tool, f"{base}/around", 3.0)
        await tool.aclose()
    assert forbidden.connections == []


async def test_connections_go_to_the_address_the_policy_checked():
    """Chromium never resolves a name itself: `site.test` exists only in the policy's resolver, and the page loads."""
    require("chromium")
    with serve_pages({"/": "<title>Pinned</title><p>reached through the checked address</p>"}) as base:
        port = base.rsplit(":", 1)[1]
        policy = NavigationPolicy(
            allow_addresses=[f"127.0.0.1:{port}"], resolver=lambda host: ["127.0.0.1"] if host == "site.test" else []
        )
        tool = BrowserTool(policy=policy)
        view = await tool.process(ToolCall("browser.open", "analysis", json.dumps({"id": f"http://site.test:{port}/"})))
        await tool.aclose()
    assert "reached through the checked address" in view.text(), view.text()


async def test_the_proxy_connects_only_to_what_it_checked_when_dns_changes_its_answer(forbidden):
    """DNS rebinding: the first answer is public, every later one loopback. Tunnels go to the first answer (whether
    or not it answers here), never to the forbidden loopback port; the name is resolved once."""
    from harmony_agent.tools.browser.proxy import PolicyProxy

    asked: list[str] = []

    def rebinding(host: str) -> list[str]:
        asked.append(host)
        return ["93.184.216.34"] if len(asked) == 1 else ["127.0.0.1"]

    proxy = await PolicyProxy(NavigationPolicy(resolver=rebinding), connect_timeout=1.0).start()
    port = int(proxy.url.rsplit(":", 1)[1])
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"CONNECT rebind.test:{forbidden.port} HTTP/1.1\r\nHost: rebind.test\r\n\r\n".encode())
        await writer.drain()
        await asyncio.wait_for(reader.readline(), 5)
        writer.close()
    await proxy.close()
    time.sleep(0.3)
    assert asked == ["rebind.test"]
    assert forbidden.connections == []


async def test_the_proxy_refuses_what_the_policy_refuses_and_says_so(forbidden):
    from harmony_agent.tools.browser.proxy import PolicyProxy

    proxy = await PolicyProxy(NavigationPolicy()).start()
    port = int(proxy.url.rsplit(":", 1)[1])
    replies = []
    for request in (
        f"CONNECT 127.0.0.1:{forbidden.port} HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET http://127.0.0.1:{forbidden.port}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "GET /relative HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "nonsense\r\n\r\n",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request.encode())
        await writer.drain()
        replies.append((await asyncio.wait_for(reader.read(4096), 5)).decode())
        writer.close()
    await proxy.close()
    assert " 403 " in replies[0] and " 403 " in replies[1] and " 400 " in replies[2], replies
    # A refused plain-HTTP request is answered with a page that says so (a tab or frame shows it), not left blank.
    assert "text/html" in replies[1] and replies[1].endswith("<h1>Navigation refused by policy</h1>"), replies[1]
    assert replies[3] == ""  # spoken nonsense: the connection is closed, and the proxy keeps serving others
    assert proxy.refused == 2 and forbidden.connections == []


def _websocket_server() -> tuple[socket.socket, list[str]]:
    """A WebSocket endpoint on 127.0.0.1 that answers the handshake and sends one text frame, "hello"."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    seen: list[str] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
            lines = head.decode(errors="replace").split("\r\n")
            seen.append(lines[0])
            key = next(
                (line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("sec-websocket-key:")), ""
            )
            accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + bytes([0x81, 5]) + b"hello"
            )
            time.sleep(1)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, seen


async def test_sockets_a_session_allows_go_through_the_proxy_to_the_checked_address():
    """`allow_sockets=True`: a page's WebSocket to an allowed port is tunnelled (CONNECT) and works end to end."""
    require("chromium")
    server, seen = _websocket_server()
    ws_port = server.getsockname()[1]
    page = f"""<title>Socket</title><p id="out">waiting</p><script>
const ws = new WebSocket("ws://127.0.0.1:{ws_port}/chat");
ws.onmessage = (event) => {{ document.getElementById("out").textContent = "got " + event.data; }};
ws.onerror = () => {{ document.getElementById("out").textContent = "socket failed"; }};
</script>"""
    try:
        with serve_pages({"/socket": page}) as base:
            policy = NavigationPolicy(allow_addresses=[f"127.0.0.1:{base.rsplit(':', 1)[1]}", f"127.0.0.1:{ws_port}"])
            tool = BrowserTool(policy=policy, allow_sockets=True)
            await tool.process(ToolCall("browser.open", "analysis", json.dumps({"id": f"{base}/socket"})))
            # The view is read at the page's load; the socket's tunnel runs on this loop, so wait on it, not block it.
            for _ in range(100):
                await asyncio.sleep(0.1)
                view = await tool.process(ToolCall("browser.open", "analysis", "{}"))
                if "waiting" not in view.text():
                    break
            await tool.aclose()
    finally:
        server.close()
    assert "got hello" in view.text(), view.text()
    assert seen == ["GET /chat HTTP/1.1"]


async def test_a_tunnel_to_an_allowed_port_carries_bytes_both_ways():
    from harmony_agent.tools.browser.proxy import PolicyProxy

    echo = await asyncio.start_server(lambda r, w: _echo(r, w), "127.0.0.1", 0)
    port = echo.sockets[0].getsockname()[1]
    proxy = await PolicyProxy(NavigationPolicy(allow_addresses=[f"127.0.0.1:{port}"])).start()
    reader, writer = await asyncio.open_connection("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]))
    writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\nearly bytes|".encode())
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 5)
    while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b""):
        pass
    writer.write(b"and later")
    await writer.drain()
    echoed = b""
    while len(echoed) < len(b"early bytes|and later"):
        echoed += await asyncio.wait_for(reader.read(100), 5)
    writer.close()
    await proxy.close()
    echo.close()
    assert b" 200 " in status and echoed == b"early bytes|and later"


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(100):
        writer.write(data)
        await writer.drain()
    writer.close()


async def test_policy_lookups_run_off_the_event_loop_and_expire():
    """A slow resolver must not stall the loop (pages, other sessions); a name is looked up again after its TTL."""
    import harmony_agent.tools.browser.policy as policy_module

    calls: list[float] = []

    def slow(host: str) -> list[str]:
        calls.append(time.monotonic())
        time.sleep(0.5)
        return ["93.184.216.34"]

    policy = NavigationPolicy(resolver=slow)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    running = asyncio.ensure_future(ticker())
    assert await policy.check_async("http://slow.example/") is None
    assert await policy.check_async("http://slow.example/again") is None  # cached: no second lookup
    running.cancel()
    assert ticks >= 20 and len(calls) == 1  # the loop kept ticking through the 0.5 s lookup
    original = policy_module.RESOLVE_TTL_S
    policy_module.RESOLVE_TTL_S = 0.0
    try:
        assert await policy.check_async("http://slow.example/") is None
    finally:
        policy_module.RESOLVE_TTL_S = original
    assert len(calls) == 2
