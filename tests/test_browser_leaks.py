"""The browser policy holds for names Chromium resolves itself, unresolvable names, and WebRTC; sessions clean up.

Each leak is checked with servers the test starts on 127.0.0.1 that log every
HTTP request, TCP connection and UDP datagram they get: a refused target must
log nothing.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from available import require
from tools import ToolCall
from tools.browser import BrowserTool, NavigationPolicy


class _Forbidden:
    """A TCP port that logs every connection (and the request line, if any), and a UDP port that logs datagrams."""

    def __init__(self) -> None:
        self.connections: list[str] = []
        self.datagrams: list[bytes] = []
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.tcp.settimeout(0.2)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.2)
        self.port, self.udp_port = self.tcp.getsockname()[1], self.udp.getsockname()[1]
        self._stop = False
        self._threads = [threading.Thread(target=self._accept, daemon=True), threading.Thread(target=self._receive, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                continue
            conn.settimeout(0.5)
            try:
                first = conn.recv(200).split(b"\r\n")[0].decode(errors="replace")
            except OSError:
                first = ""
            self.connections.append(first or "(bare connection)")
            conn.close()

    def _receive(self) -> None:
        while not self._stop:
            try:
                self.datagrams.append(self.udp.recvfrom(2048)[0])
            except OSError:
                continue

    def close(self) -> None:
        self._stop = True
        for thread in self._threads:
            thread.join(2)
        self.tcp.close()
        self.udp.close()


@pytest.fixture
def forbidden() -> Iterator[_Forbidden]:
    logger = _Forbidden()
    yield logger
    logger.close()


@contextlib.contextmanager
def _serve(pages: dict[str, str]) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            data = pages.get(self.path, "").encode()
            self.send_response(200 if data else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_loopback_names_and_unresolvable_names_are_refused():
    nothing = NavigationPolicy(resolver=lambda host: [])
    for url in ("http://localhost./", "http://anything.localhost:8080/", "http://a.b.localhost./x", "http://LOCALHOST.:1/"):
        assert "loopback" in (nothing.check(url) or ""), url
    assert "does not resolve" in nothing.check("http://no-such-name.invalid/")
    named = NavigationPolicy(allow_domains=["intranet.test"], resolver=lambda host: [])
    assert named.check("http://wiki.intranet.test/") is None  # explicitly allowed by name
    assert "deny list" in NavigationPolicy(deny_domains=["example.org"], resolver=lambda host: ["93.184.216.34"]).check(
        "http://example.org./")
    # Allowing 127.0.0.1 does not open localhost names, which may also lead to ::1.
    assert NavigationPolicy(allow_addresses=["127.0.0.1"]).check("http://x.localhost/") is not None


async def test_chromium_never_reaches_a_refused_local_port_through_localhost_names(forbidden):
    require("chromium")
    port = forbidden.port
    page = (f'<title>Lures</title><img src="http://localhost.:{port}/img"><img src="http://x.localhost:{port}/img2">'
            f'<iframe src="http://anything.localhost:{port}/frame"></iframe>'
            f'<script>fetch("http://localhost.:{port}/fetch").catch(() => {{}});</script><p>lures set</p>')
    tool = BrowserTool(policy=NavigationPolicy(allow_addresses=["127.0.0.1"]))
    with _serve({"/lures": page}) as base:
        for url in (f"http://localhost.:{port}/open", f"http://anything.localhost:{port}/open", f"http://x.localhost.:{port}/"):
            refused = await tool.execute(ToolCall("browser.open", "analysis", json.dumps({"id": url})))
            assert refused.is_error and "loopback" in refused.text(), refused.text()
        lured = await tool.execute(ToolCall("browser.open", "analysis", json.dumps({"id": f"{base}/lures"})))
        assert "lures set" in lured.text()
        time.sleep(0.5)
        await tool.aclose()
    assert forbidden.connections == []


async def test_webrtc_sends_no_datagrams_under_any_constructor_name(forbidden):
    require("chromium")
    page = """<title>RTC</title><p id="out">starting</p><script>
const names = ["RTCPeerConnection", "webkitRTCPeerConnection"];
const report = [];
for (const name of names) {
  const Ctor = window[name];
  if (typeof Ctor !== "function") { report.push(name + ": none"); continue; }
  try {
    const pc = new Ctor({ iceServers: [{ urls: "stun:127.0.0.1:%d" }] });
    pc.createDataChannel("x");
    pc.createOffer().then((offer) => pc.setLocalDescription(offer));
    report.push(name + ": made");
  } catch (e) { report.push(name + ": " + e.name); }
}
document.getElementById("out").textContent = report.join("; ");
</script>""" % forbidden.udp_port
    tool = BrowserTool(policy=NavigationPolicy(allow_domains=["127.0.0.1"], allow_addresses=["127.0.0.1"]))
    with _serve({"/rtc": page}) as base:
        view = await tool.execute(ToolCall("browser.open", "analysis", json.dumps({"id": f"{base}/rtc"})))
        assert "RTCPeerConnection: none" in view.text() and "webkitRTCPeerConnection: none" in view.text(), view.text()
        time.sleep(2)  # ICE gathering would have sent its STUN requests by now
        await tool.aclose()
    assert forbidden.datagrams == []


async def test_a_sessions_own_downloads_folder_is_removed_on_close_and_a_given_one_kept(tmp_path):
    require("chromium")
    policy = NavigationPolicy(allow_domains=["127.0.0.1"], allow_addresses=["127.0.0.1"])
    own, given = BrowserTool(policy=policy), BrowserTool(policy=policy, downloads=tmp_path / "mine")
    with _serve({"/": "<title>x</title><p>hello</p>"}) as base:
        for tool in (own, given):
            await tool.execute(ToolCall("browser.open", "analysis", json.dumps({"id": f"{base}/"})))
        folders = (own.session.downloads_dir, given.session.downloads_dir)
        (folders[1]).mkdir(parents=True, exist_ok=True)
        assert folders[0].is_dir()
        await own.aclose()
        await given.aclose()
    assert not folders[0].exists() and folders[1].is_dir()
