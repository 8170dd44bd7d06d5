"""The Responses API server, driven by the real ``openai`` SDK over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading

import pytest

from helpers import ROOT

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

from harmony_agent import ScriptedModel
from harmony_agent.server import ServerConfig
from helpers.completions import RecordingModel, call, final
from helpers.serving import client, running


def test_plain_answer_and_models():
    model = ScriptedModel(["<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant" + final("Paris.")])
    with running(ServerConfig(model)) as url:
        c = client(url)
        response = c.responses.create(model="gpt-oss", input="Capital of France?")
        assert response.status == "completed"
        assert response.output_text == "Paris."
        assert [item.type for item in response.output] == ["reasoning", "message"]
        assert response.output[0].content[0].text == "Easy."
        assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
        assert [m.id for m in c.models.list().data] == [model.name]


def test_streaming_events_in_order():
    model = ScriptedModel(["<|channel|>analysis<|message|>Think.<|end|><|start|>assistant" + final("Done here.")])
    with running(ServerConfig(model)) as url:
        events = list(client(url).responses.create(model="gpt-oss", input="Go", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds.index("response.reasoning_text.delta") < kinds.index("response.output_text.delta")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Done here."
    assert [e.sequence_number for e in events] == sorted(e.sequence_number for e in events)
    assert events[-1].response.output_text == "Done here."


def test_function_tool_round_trip_with_previous_response_id():
    model = RecordingModel([call("lookup", '{"city": "Oslo"}'), final("It is 3 degrees in Oslo.")], as_text=True)
    tools = [
        {
            "type": "function",
            "name": "lookup",
            "description": "Weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    ]
    with running(ServerConfig(model)) as url:
        c = client(url)
        first = c.responses.create(model="gpt-oss", input="Weather in Oslo?", tools=tools)
        [fc] = [item for item in first.output if item.type == "function_call"]
        assert fc.name == "lookup" and fc.arguments == '{"city": "Oslo"}'
        second = c.responses.create(
            model="gpt-oss",
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": fc.call_id, "output": "3 degrees"}],
        )
        assert second.output_text == "It is 3 degrees in Oslo."
    assert "type lookup = (_: {\ncity: string,\n}) => any;" in model.prompts[0]
    assert "<|start|>functions.lookup to=assistant<|channel|>commentary<|message|>3 degrees<|end|>" in model.prompts[1]


def test_streamed_function_call_arguments():
    model = ScriptedModel([call("lookup", '{"city": "Rome"}')])
    tools = [
        {
            "type": "function",
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    with running(ServerConfig(model)) as url:
        events = list(client(url).responses.create(model="gpt-oss", input="x", tools=tools, stream=True))
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert deltas == '{"city": "Rome"}'
    done = [e for e in events if e.type == "response.output_item.done"][-1]
    assert done.item.type == "function_call" and done.item.arguments == '{"city": "Rome"}'


def test_previous_response_continues_the_conversation():
    model = RecordingModel([final("Noted: 7."), final("You said 7.")], as_text=True)
    with running(ServerConfig(model)) as url:
        c = client(url)
        first = c.responses.create(model="gpt-oss", input="Remember 7.")
        second = c.responses.create(model="gpt-oss", input="What did I say?", previous_response_id=first.id)
    assert second.output_text == "You said 7."
    assert model.prompts[1].startswith(model.prompts[0])  # the conversation extends, token for token


def test_auth_is_refused_without_the_key():
    with running(ServerConfig(ScriptedModel([final("hi")]), api_key="s3cret")) as url:
        with pytest.raises(openai.AuthenticationError):
            client(url, "wrong").responses.create(model="gpt-oss", input="hi")
        assert client(url, "s3cret").responses.create(model="gpt-oss", input="hi").output_text == "hi"


def test_bad_requests_are_clear_errors():
    with running(ServerConfig(ScriptedModel([final("hi")]))) as url:
        c = client(url)
        with pytest.raises(openai.BadRequestError, match="does not run the python tool"):
            c.responses.create(
                model="gpt-oss", input="x", tools=[{"type": "code_interpreter", "container": {"type": "auto"}}]
            )
        with pytest.raises(openai.NotFoundError, match="no stored response"):
            c.responses.create(model="gpt-oss", input="x", previous_response_id="resp_missing")
        with pytest.raises(openai.BadRequestError, match="previous_response_id"):
            c.responses.create(model="gpt-oss", input=[{"type": "function_call_output", "call_id": "c", "output": "1"}])


def py(code: str) -> str:
    return f"<|channel|>analysis to=python code<|message|>{code}<|call|>"


def test_python_builtin_runs_on_the_server_and_conversations_are_isolated():
    from harmony_agent.tools import PythonTool
    from helpers.available import require

    require("bubblewrap")
    model = ScriptedModel([py("x = 5\nprint(x * 2)"), final("10"), py("print(x)"), final("?")])
    config = ServerConfig(model, builtin_tools={"python": PythonTool(sandbox="bubblewrap")})
    with running(config) as url:
        c = client(url)
        tools = [{"type": "code_interpreter", "container": {"type": "auto"}}]
        first = c.responses.create(model="gpt-oss", input="Compute", tools=tools)
        [ci] = [item for item in first.output if item.type == "code_interpreter_call"]
        assert ci.code == "x = 5\nprint(x * 2)" and ci.outputs[0].logs == "10" and ci.status == "completed"
        other = c.responses.create(model="gpt-oss", input="Read x", tools=tools)  # a new conversation
        [ci2] = [item for item in other.output if item.type == "code_interpreter_call"]
        assert "NameError" in ci2.outputs[0].logs


def test_a_local_model_reuses_its_cache_across_requests(tiny_model):
    pytest.importorskip("torch")
    from harmony_agent.models.transformers_model import TransformersModel

    model = TransformersModel(tiny_model)
    with running(ServerConfig(model)) as url:
        c = client(url)
        first = c.responses.create(model="gpt-oss", input="Hello there", max_output_tokens=4)
        second = c.responses.create(
            model="gpt-oss", input="And again", previous_response_id=first.id, max_output_tokens=4
        )
    assert first.status == "incomplete" and first.incomplete_details.reason == "max_output_tokens"
    new_tokens = second.usage.input_tokens - first.usage.input_tokens
    assert second.usage.input_tokens_details.cached_tokens >= second.usage.input_tokens - new_tokens - 1
    assert second.usage.input_tokens_details.cached_tokens > 0


class Slow(ScriptedModel):
    """Generates slowly, and records whether its generation was stopped early."""

    def __init__(self, completions):
        super().__init__(completions)
        self.stopped_early = threading.Event()

    async def generate(self, prompt, *, stop, sampling):
        try:
            async for token in super().generate(prompt, stop=stop, sampling=sampling):
                await asyncio.sleep(0.05)
                yield token
        except (GeneratorExit, asyncio.CancelledError):
            self.stopped_early.set()
            raise


def test_a_client_that_disconnects_mid_stream_releases_its_session():
    import httpx

    model = Slow([final("word " * 200)])
    config = ServerConfig(model)
    with running(config) as url:
        with (
            httpx.Client(timeout=30) as http,
            http.stream("POST", f"{url}/responses", json={"input": "talk", "stream": True}) as reply,
        ):
            for line in reply.iter_lines():
                if "output_text.delta" in line:
                    break  # hang up mid-answer
        assert model.stopped_early.wait(10)
        response = client(url).models.list()  # the server is still fine
        assert response.data


ARTIFACTS = ROOT / "test-artifacts"


def test_the_chat_page_streams_an_answer_with_reasoning_and_a_tool_call():
    """The page in real headless Chromium: send a message, watch the answer, the python call and its output arrive."""
    from harmony_agent.tools import PythonTool
    from helpers.available import require

    require("chromium")
    require("bubblewrap")
    from playwright.sync_api import sync_playwright

    from harmony_agent.tools.browser.engine import find_chromium

    model = ScriptedModel(
        [
            "<|channel|>analysis<|message|>Square it in python.<|end|><|start|>assistant" + py("print(12 ** 2)"),
            final("12 squared is 144."),
        ]
    )
    config = ServerConfig(model, builtin_tools={"python": PythonTool(sandbox="bubblewrap")})
    with running(config) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.goto(url.removesuffix("/v1") + "/")
            page.wait_for_selector(".tool-choice")  # the server's tools are offered
            page.fill("#input", "What is 12 squared?")
            page.press("#input", "Enter")
            page.wait_for_selector(".status:text-matches('completed')", timeout=30_000)
            assert page.inner_text(".answer") == "12 squared is 144."
            tool = page.locator(".tool")
            assert "python" in tool.inner_text() and "print(12 ** 2)" in tool.inner_text()
            assert page.inner_text(".tool .result") == "144"
            reasoning = page.locator("details.reasoning")
            assert not reasoning.evaluate("d => d.open")  # reasoning starts collapsed
            reasoning.locator("summary").click()
            assert "Square it in python." in reasoning.inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "server-page.png"), full_page=True)
        finally:
            browser.close()


def test_errors_are_json_on_every_route_and_stored_responses_can_be_retrieved():
    import httpx

    with running(ServerConfig(ScriptedModel([final("Kept."), final("Not kept.")]))) as url:
        c = client(url)
        kept = c.responses.create(model="gpt-oss", input="Keep this")
        again = c.responses.retrieve(kept.id)
        assert again.id == kept.id and again.output_text == "Kept." and again.status == "completed"
        unstored = c.responses.create(model="gpt-oss", input="Do not keep this", store=False)
        with pytest.raises(openai.NotFoundError, match="no stored response"):
            c.responses.retrieve(unstored.id)
        with httpx.Client(timeout=30) as http:
            for method, path, status in [
                ("GET", "/v1/nowhere", 404),
                ("POST", "/v1/chat/nowhere", 404),
                ("DELETE", "/v1/responses", 405),
                ("GET", "/v1/responses", 405),
            ]:
                reply = http.request(method, url + path.removeprefix("/v1"), json={} if method != "GET" else None)
                assert reply.status_code == status, (method, path)
                assert reply.headers["content-type"].startswith("application/json")
                error = reply.json()["error"]
                assert error["message"] and error["type"] and error["code"]
