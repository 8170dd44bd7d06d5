"""`serve --approve` and downloads: tool calls wait for a person on the page; a finished run comes as report or transcript.

Real pieces throughout: the server on uvicorn on 127.0.0.1, httpx and the page in
headless Chromium as clients, python in bubblewrap; the model is scripted.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
from test_server import ARTIFACTS, client, py, running

from harmony_agent import ScriptedModel
from harmony_agent.events import RunEndEvent, ToolResultEvent, event_from_json
from harmony_agent.server import ServerConfig
from helpers.available import require
from helpers.completions import RecordingModel, final

CODE = "print(6 * 7)"


def _config(model, **extra) -> ServerConfig:
    from harmony_agent.tools import PythonTool

    require("bubblewrap")
    return ServerConfig(model, builtin_tools={"python": PythonTool(sandbox="bubblewrap")}, approve=True, **extra)


def _events(reply: httpx.Response):
    """Server-sent events as dicts, as they arrive."""
    for line in reply.iter_lines():
        if line.startswith("data:"):
            yield json.loads(line[5:].strip())


def _stream(http: httpx.Client, url: str, answers: dict[str, dict]) -> tuple[list[dict], list[str]]:
    """Post a streamed request; answer each approval request with ``answers[recipient]``; return events and ids."""
    seen, asked = [], []
    body = {"input": "Compute", "stream": True, "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}
    with http.stream("POST", f"{url}/responses", json=body) as reply:
        for event in _events(reply):
            seen.append(event)
            if event["type"] == "response.approval_requested":
                asked.append(event["approval_id"])
                verdict = http.post(f"{url}/approvals/{event['approval_id']}", json=answers[event["recipient"]])
                assert verdict.status_code == 200, verdict.text
    return seen, asked


def test_a_tool_call_runs_only_after_it_is_approved():
    with running(_config(ScriptedModel([py(CODE), final("It is 42.")]))) as url, httpx.Client(timeout=60) as http:
        seen, asked = _stream(http, url, {"python": {"approve": True}})
        request = next(e for e in seen if e["type"] == "response.approval_requested")
        assert request["recipient"] == "python" and request["arguments"] == CODE
        done = seen[-1]["response"]
        [ran] = [item for item in done["output"] if item["type"] == "code_interpreter_call"]
        assert ran["status"] == "completed" and ran["outputs"][0]["logs"] == "42"
        assert done["status"] == "completed" and len(asked) == 1
        # Answered once: asking again is a clear 404, not a crash.
        again = http.post(f"{url}/approvals/{asked[0]}", json={"approve": True})
        assert again.status_code == 404 and "no such approval" in again.json()["error"]["message"]


def test_a_denial_tells_the_model_the_reason_and_the_code_never_runs(tmp_path):
    marker = tmp_path / "ran"
    model = RecordingModel([py(f"open({str(marker)!r}, 'w')"), final("Understood.")], as_text=True)
    with running(_config(model)) as url, httpx.Client(timeout=60) as http:
        seen, _ = _stream(http, url, {"python": {"approve": False, "reason": "not on my machine"}})
    [refused] = [item for item in seen[-1]["response"]["output"] if item["type"] == "code_interpreter_call"]
    assert (
        refused["status"] == "failed" and "not approved on the page: not on my machine" in refused["outputs"][0]["logs"]
    )
    assert "not on my machine" in model.prompts[-1]  # what the model read next
    assert not marker.exists()


def test_without_a_stream_there_is_nobody_to_ask_so_calls_are_refused_at_once():
    with running(_config(ScriptedModel([py(CODE), final("Refused, then.")]))) as url:
        response = client(url).responses.create(
            model="gpt-oss", input="Compute", tools=[{"type": "code_interpreter", "container": {"type": "auto"}}]
        )
    [refused] = [item for item in response.output if item.type == "code_interpreter_call"]
    assert refused.status == "failed" and "was not streamed" in refused.outputs[0].logs
    assert response.output_text == "Refused, then."


def test_a_page_that_goes_away_while_asked_denies_and_releases_the_run():
    model = ScriptedModel([py(CODE), final("never")])
    with running(_config(model)) as url, httpx.Client(timeout=60) as http:
        body = {
            "input": "Compute",
            "stream": True,
            "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}],
        }
        with http.stream("POST", f"{url}/responses", json=body) as reply:
            asked = next(e for e in _events(reply) if e["type"] == "response.approval_requested")
        # Hung up while asked: the request is withdrawn, and the server answers others.
        late = http.post(f"{url}/approvals/{asked['approval_id']}", json={"approve": True})
        for _ in range(50):
            if late.status_code == 404:
                break
            threading.Event().wait(0.1)
            late = http.post(f"{url}/approvals/{asked['approval_id']}", json={"approve": True})
        assert late.status_code == 404
        assert http.get(f"{url}/models").status_code == 200


def test_bad_approval_answers_are_clear_errors():
    with running(_config(ScriptedModel([final("hi")]), api_key="sesame")) as url, httpx.Client(timeout=30) as http:
        key = {"Authorization": "Bearer sesame"}
        assert http.post(f"{url}/approvals/appr_x", json={"approve": True}).status_code == 401
        assert http.post(f"{url}/approvals/appr_x", json={"approve": "yes"}, headers=key).status_code == 400
        assert (
            http.post(
                f"{url}/approvals/appr_x", content=b"{", headers={**key, "Content-Type": "application/json"}
            ).status_code
            == 400
        )
        assert http.post(f"{url}/approvals/appr_x", json={"approve": True}, headers=key).status_code == 404


def test_a_stored_run_downloads_as_report_and_transcript():
    config = ServerConfig(ScriptedModel([py(CODE), final("It is 42.")]), api_key="sesame")
    from harmony_agent.tools import PythonTool

    require("bubblewrap")
    config.builtin_tools = {"python": PythonTool(sandbox="bubblewrap")}
    with running(config) as url, httpx.Client(timeout=60, headers={"Authorization": "Bearer sesame"}) as http:
        done = http.post(f"{url}/responses", json={"input": "Compute", "tools": [{"type": "code_interpreter"}]}).json()
        report = http.get(f"{url}/responses/{done['id']}/report.html")
        transcript = http.get(f"{url}/responses/{done['id']}/transcript.jsonl")
        assert httpx.get(f"{url}/responses/{done['id']}/report.html").status_code == 401  # the key is needed
        assert http.get(f"{url}/responses/resp_nothing/report.html").status_code == 404
        assert http.get(f"{url}/responses/{done['id']}/secrets.txt").status_code == 404
        unstored = http.post(f"{url}/responses", json={"input": "again", "store": False}).json()
        assert http.get(f"{url}/responses/{unstored['id']}/transcript.jsonl").status_code == 404
    assert report.status_code == 200 and "attachment" in report.headers["content-disposition"]
    assert "print(6 * 7)" in report.text and "It is 42." in report.text
    events = [event_from_json(line) for line in transcript.text.splitlines()]
    assert any(isinstance(e, ToolResultEvent) and e.content == "42" for e in events)
    assert isinstance(events[-1], RunEndEvent) and events[-1].final_text == "It is 42."


def test_the_page_asks_for_approval_and_downloads_the_run(tmp_path):
    """Headless Chromium on the chat page: approve a python call from the page, then save the report and transcript."""
    require("chromium")
    from playwright.sync_api import sync_playwright

    from harmony_agent.tools.browser.engine import find_chromium

    model = ScriptedModel([py(CODE), final("It is 42."), py("print('second')"), final("Denied, fine.")])
    with running(_config(model)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 760}, accept_downloads=True)
            page.goto(url.removesuffix("/v1") + "/")
            page.wait_for_selector(".tool-choice")
            page.fill("#input", "What is 6 times 7?")
            page.press("#input", "Enter")
            page.wait_for_selector(".approval button.approve")
            assert "Allow python?" in page.inner_text(".approval") and CODE in page.inner_text(".approval pre")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "server-page-approval.png"), full_page=True)
            assert page.locator(".tool .result").count() == 0  # nothing ran yet
            page.click(".approval button.approve")
            page.wait_for_selector(".status:text-matches('completed')", timeout=30_000)
            assert page.inner_text(".tool .result") == "42" and page.inner_text(".answer") == "It is 42."
            saved = {}
            for kind in ("report.html", "transcript.jsonl"):
                with page.expect_download() as info:
                    page.click(f".downloads button[data-kind='{kind}']")
                target = tmp_path / kind
                info.value.save_as(target)
                saved[kind] = target.read_text()
            # A second turn, denied from the page with a reason.
            page.fill("#input", "Print something")
            page.press("#input", "Enter")
            page.wait_for_selector(".turn:nth-of-type(2) .approval button.deny")
            page.fill(".turn:nth-of-type(2) .approval input.reason", "no more code today")
            page.click(".turn:nth-of-type(2) .approval button.deny")
            page.wait_for_selector(".turn:nth-of-type(2) .status:text-matches('completed')", timeout=30_000)
            assert "no more code today" in page.inner_text(".turn:nth-of-type(2) .tool")
        finally:
            browser.close()
    assert "print(6 * 7)" in saved["report.html"] and "It is 42." in saved["report.html"]
    assert [event_from_json(line).type for line in saved["transcript.jsonl"].splitlines()][-1] == "run_end"
    assert Path(ARTIFACTS / "server-page-approval.png").stat().st_size > 0


async def test_a_request_made_before_the_stream_opens_waits_for_it():
    """The run may ask before the page's stream has attached: the request is held for the stream, not refused."""
    import asyncio

    from harmony_agent.server.approvals import Approvals
    from harmony_agent.tools import ToolCall

    approvals = Approvals()
    gate = approvals.gate()
    unstreamed = await gate(ToolCall("python", "analysis", CODE))
    assert isinstance(unstreamed, str) and "was not streamed" in unstreamed
    gate.expect()
    asked = asyncio.ensure_future(gate(ToolCall("python", "analysis", CODE)))
    await asyncio.sleep(0.05)
    assert not asked.done()  # held, not refused
    seen: list[dict] = []
    gate.attach(seen.append)
    assert [event["recipient"] for event in seen] == ["python"]
    assert approvals.resolve(seen[0]["approval_id"], True)
    assert await asyncio.wait_for(asked, 5) is True
    gate.detach()
    assert "was not streamed" in await gate(ToolCall("python", "analysis", CODE))
