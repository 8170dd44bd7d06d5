"""``serve``'s boundaries against a web page, a rebinding DNS name and a hostile body, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from harmony_agent.server import ServerConfig, create_app
from helpers.completions import RecordingModel, final
from helpers.processes import free_port
from helpers.serving import running


def model():
    return RecordingModel([final("ran")] * 5, as_text=True)


def error_of(reply) -> dict:
    assert reply.headers["content-type"].startswith("application/json"), reply.text[:200]
    return reply.json()["error"]


def test_only_the_bound_address_localhost_and_allowed_names_are_accepted_as_host():
    with running(ServerConfig(model(), allow_hosts=["agent.lan"])) as url, httpx.Client(timeout=30) as http:
        port = url.split(":")[2].split("/")[0]
        reply = http.get(f"{url}/models", headers={"Host": f"rebound.example:{port}"})
        assert reply.status_code == 400 and error_of(reply)["code"] == "invalid_host"
        assert http.get(f"{url}/models", headers={"Host": "rebound.example"}).status_code == 400
        assert http.get(f"{url}/models").status_code == 200  # Host: 127.0.0.1:PORT
        assert http.get(f"{url}/models", headers={"Host": f"localhost:{port}"}).status_code == 200
        assert http.get(f"{url}/models", headers={"Host": f"agent.lan:{port}"}).status_code == 200


def test_a_text_plain_post_is_refused_before_anything_runs():
    recorder = model()
    with running(ServerConfig(recorder)) as url, httpx.Client(timeout=30) as http:
        body = json.dumps({"input": "print(open('/etc/passwd').read())"})
        reply = http.post(f"{url}/responses", content=body, headers={"Content-Type": "text/plain"})
        assert reply.status_code == 415 and error_of(reply)["code"] == "unsupported_media_type"
        form = http.post(f"{url}/chat/completions", data={"messages": "x"})  # a form post
        assert form.status_code == 415
    assert recorder.prompts == []


def test_foreign_origins_are_refused_and_preflights_allow_nobody():
    recorder = model()
    with running(ServerConfig(recorder)) as url, httpx.Client(timeout=30) as http:
        own = url.removesuffix("/v1")
        reply = http.post(f"{url}/responses", json={"input": "hi"}, headers={"Origin": "http://evil.example"})
        assert reply.status_code == 403 and error_of(reply)["code"] == "forbidden_origin"
        assert http.post(f"{url}/responses", json={"input": "hi"}, headers={"Origin": "null"}).status_code == 403
        other_port = {"Origin": f"http://127.0.0.1:{free_port()}"}  # another local server is another origin
        assert http.post(f"{url}/responses", json={"input": "hi"}, headers=other_port).status_code == 403
        assert recorder.prompts == []
        assert http.post(f"{url}/responses", json={"input": "hi"}, headers={"Origin": own}).status_code == 200
        preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
        reply = http.options(f"{url}/responses", headers=preflight)
        assert reply.status_code == 403 and "access-control-allow-origin" not in reply.headers
        reply = http.options(f"{url}/responses", headers={**preflight, "Origin": own})
        assert reply.status_code == 204 and "access-control-allow-origin" not in reply.headers


def test_huge_and_deeply_nested_bodies_are_refused_with_json_errors():
    recorder = model()
    with running(ServerConfig(recorder)) as url, httpx.Client(timeout=120) as http:
        huge = json.dumps({"input": "x" * (50 * 1024 * 1024)}).encode()
        reply = http.post(f"{url}/responses", content=huge, headers={"Content-Type": "application/json"})
        assert reply.status_code == 413 and error_of(reply)["code"] == "request_too_large"

        def chunks():  # no Content-Length: counted as it arrives
            for _ in range(50):
                yield b" " * (1024 * 1024)

        reply = http.post(f"{url}/responses", content=chunks(), headers={"Content-Type": "application/json"})
        assert reply.status_code == 413
        deep = '{"input": ' + "[" * 100_000 + "]" * 100_000 + "}"
        reply = http.post(f"{url}/responses", content=deep, headers={"Content-Type": "application/json"})
        assert reply.status_code == 400 and "nests deeper" in error_of(reply)["message"]
        schema: dict = {"type": "string"}
        for _ in range(200):
            schema = {"type": "object", "properties": {"a": schema}}
        tools = [{"type": "function", "name": "f", "parameters": schema}]
        reply = http.post(f"{url}/responses", json={"input": "hi", "tools": tools})
        assert reply.status_code == 400 and "nests deeper" in error_of(reply)["message"]
        messages = [{"role": "user", "content": "hi"}]
        reply = http.post(
            f"{url}/chat/completions",
            json={"messages": messages, "tools": [{"type": "function", "function": tools[0]}]},
        )
        assert reply.status_code == 400
        assert http.get(f"{url}/models").status_code == 200  # and the server is fine
    assert recorder.prompts == []


def test_files_need_the_api_key(tmp_path):
    image = tmp_path / "shot.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    config = ServerConfig(model(), api_key="sesame")
    app = create_app(config)
    link = app.state.files.publish(str(image))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with httpx.Client(timeout=30) as http:
            reply = http.get(f"http://127.0.0.1:{port}{link}")
            assert reply.status_code == 401 and error_of(reply)["code"] == "invalid_api_key"
            reply = http.get(f"http://127.0.0.1:{port}{link}", headers={"Authorization": "Bearer sesame"})
            assert reply.status_code == 200 and reply.content == image.read_bytes()
    finally:
        server.should_exit = True
        thread.join(20)


def test_a_page_on_another_origin_cannot_start_a_run_in_chromium():
    """A real page on another port (another origin) tries the text/plain POST that needs no preflight."""
    from helpers.available import require

    require("chromium")
    from playwright.sync_api import sync_playwright
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from harmony_agent.tools.browser.engine import find_chromium

    recorder = model()
    with running(ServerConfig(recorder)) as url:
        page_html = f"""<html><body><script>
        window.tried = Promise.all([
          fetch("{url}/responses", {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
                body: JSON.stringify({{input: "run this"}})}}).then(() => "sent", e => "blocked: " + e),
          fetch("{url}/chat/completions", {{method: "POST", headers: {{"Content-Type": "application/json"}},
                body: JSON.stringify({{messages: [{{role: "user", content: "run this"}}]}})}})
                .then(r => "read " + r.status, e => "blocked: " + e),
        ]);
        </script></body></html>"""
        other = Starlette(routes=[Route("/", lambda request: HTMLResponse(page_html))])
        with running_app(other) as origin, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=find_chromium(), headless=True)
            try:
                page = browser.new_page()
                page.goto(origin + "/")
                outcomes = page.evaluate("window.tried")
            finally:
                browser.close()
    assert outcomes[0] == "sent"  # the browser sends it (no-cors), and the server refuses it
    assert outcomes[1].startswith("blocked")  # a JSON POST needs a preflight, which grants nothing
    assert recorder.prompts == []


def running_app(app):
    from contextlib import contextmanager

    @contextmanager
    def serving():
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(20)

    return serving()
