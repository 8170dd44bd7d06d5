"""ServerRenderedModel (``openai-chat+`` / ``openai-responses+``) against a stand-in server on 127.0.0.1.

The stand-in answers Chat Completions and Responses requests with replies
queued by each test and records what it was sent, so the tests check both
directions: what the agent sends (messages, tools, the key, reasoning fed
back) and what a reply becomes (harmony tokens the loop runs on). The error
paths (a bad key, other 4xx, malformed replies) must end the run with a clear
model error, never a crash. The real server (vLLM) is in test_served_harmony_vllm.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harmony_agent import Agent
from harmony_agent.harmony.encoding import CALL, RETURN, render_prompt, stop_tokens, user_message
from harmony_agent.models import ModelError, SamplingParams, load_model
from harmony_agent.models.openai_api import RENDER_SLACK, ServerRenderedModel
from harmony_agent.tools.python import PythonTool
from helpers.completions import get_weather


class StandIn:
    """Replies queued per test, requests recorded (path, headers, JSON body)."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, object]] = []
        self.requests: list[tuple[str, dict[str, str], dict]] = []


@pytest.fixture
def standin():
    state = StandIn()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, body: object) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send(200, {"object": "list", "data": [{"id": "gpt-oss-120b", "max_model_len": 20000}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            state.requests.append((self.path, dict(self.headers), body))
            status, reply = state.replies.pop(0) if state.replies else (500, {"error": {"message": "no reply queued"}})
            self._send(status, reply)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def chat_reply(*, content=None, reasoning=None, calls=(), finish="stop", field="reasoning_content"):
    message = {"role": "assistant", "content": content}
    if reasoning is not None:
        message[field] = reasoning
    if calls:
        message["tool_calls"] = [
            {"id": f"x{i}", "type": "function", "function": {"name": name, "arguments": args}}
            for i, (name, args) in enumerate(calls)
        ]
    return 200, {
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 64}},
    }


def test_chat_completions_tool_round_trip(standin, monkeypatch):
    url, state = standin
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    monkeypatch.delenv("HARMONY_AGENT_API_KEY", raising=False)
    state.replies = [
        chat_reply(reasoning="Need weather.", calls=[("get_weather", '{"city":"Paris"}')], finish="tool_calls"),
        chat_reply(content="It is 21 degrees in Paris.", reasoning="Got it.", field="reasoning"),
    ]
    model = load_model(f"openai-chat+{url}#gpt-oss-120b")
    assert isinstance(model, ServerRenderedModel)
    agent = Agent(model, tools=[get_weather], instructions="Answer briefly.", reasoning="high")
    result = agent.run("Weather in Paris?")
    agent.close()
    assert result.stop_reason == "final", result.error
    assert result.final_text == "It is 21 degrees in Paris."
    generations = [e for e in result.events if e.type == "generation"]
    assert [g.stop_token for g in generations] == [CALL, RETURN]
    assert generations[0].messages[0].channel == "analysis" and generations[0].messages[0].text == "Need weather."
    assert generations[0].prefilled_tokens == 36 and generations[0].cached_tokens == 64  # the server's own count
    tool = next(e for e in result.events if e.type == "tool_result")
    assert '"temperature": 21' in tool.content

    (path, headers, first), (_, _, second) = state.requests
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer sk-test-123"
    assert first["model"] == "gpt-oss-120b" and first["reasoning_effort"] == "high"
    # high reasoning may use 32768 tokens, but not more than the window leaves beside the server's rendering
    assert first["max_tokens"] == 20000 - generations[0].prompt_tokens - RENDER_SLACK < 32768
    assert first["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    (spec,) = first["tools"]
    assert spec["function"]["name"] == "get_weather"
    assert spec["function"]["parameters"]["required"] == ["city"]
    # The second request carries the call (with the reasoning before it) and its result, matched by id.
    assistant, tool_message = second["messages"][2:]
    assert assistant["reasoning"] == "Need weather."
    (call,) = assistant["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == call["id"]
    assert '"temperature": 21' in tool_message["content"]


def test_builtin_python_offered_as_a_function_and_two_calls_taken_one_at_a_time(standin):
    url, state = standin
    state.replies = [
        chat_reply(calls=[("get_weather", '{"city":"Paris"}'), ("get_weather", '{"city":"Oslo"}')]),
        chat_reply(content="Paris 21, Oslo 21."),
    ]
    python = PythonTool()
    agent = Agent(ServerRenderedModel(url, api="chat"), tools=[get_weather, python])
    result = agent.run("Weather in Paris and Oslo?")
    agent.close()
    assert result.final_text == "Paris 21, Oslo 21.", result.error
    calls = [e.content for e in result.events if e.type == "tool_call"]
    assert calls == ['{"city":"Paris"}', '{"city":"Oslo"}']
    assert len(state.requests) == 2  # the second call came from the first reply, not a new request
    names = [t["function"]["name"] for t in state.requests[0][2]["tools"]]
    assert names == ["get_weather", "python"]
    python_spec = state.requests[0][2]["tools"][1]["function"]
    assert python_spec["description"] == python.namespace_description
    assert python_spec["parameters"]["required"] == ["code"]
    results = [m for m in state.requests[1][2]["messages"] if m["role"] == "tool"]
    assert [json.loads(m["content"])["city"] for m in results] == ["Paris", "Oslo"]


def test_python_call_from_the_server_becomes_harmony_code(standin):
    url, state = standin
    state.replies = [chat_reply(calls=[("python", json.dumps({"code": "print(6*7)"}))])]
    agent = Agent(ServerRenderedModel(url), tools=[PythonTool()], max_steps=1)
    events = []

    async def collect():
        async for event in agent.stream("compute"):
            events.append(event)
            if event.type == "tool_call":  # stop before the sandbox runs: the call is what this checks
                break
        await agent.aclose()

    asyncio.run(collect())
    call = next(e for e in events if e.type == "tool_call")
    assert call.recipient == "python" and call.content == "print(6*7)"
    generation = next(e for e in events if e.type == "generation")
    assert generation.messages[-1].channel == "analysis"


def test_responses_api_round_trip(standin, monkeypatch):
    url, state = standin
    monkeypatch.setenv("HARMONY_AGENT_API_KEY", "hk-1")
    state.replies = [
        (
            200,
            {
                "output": [
                    {"type": "reasoning", "content": [{"type": "reasoning_text", "text": "Call it."}]},
                    {"type": "function_call", "call_id": "c9", "name": "get_weather", "arguments": '{"city":"Rome"}'},
                ],
                "usage": {"input_tokens": 50, "input_tokens_details": {"cached_tokens": 0}},
            },
        ),
        (200, {"output": [{"type": "message", "content": [{"type": "output_text", "text": "Rome: 21."}]}]}),
    ]
    agent = Agent(load_model(f"openai-responses+{url}#m"), tools=[get_weather], instructions="Be brief.")
    result = agent.run("Rome?")
    agent.close()
    assert result.final_text == "Rome: 21.", result.error
    (path, headers, first), (_, _, second) = state.requests
    assert path == "/v1/responses" and headers["Authorization"] == "Bearer hk-1"
    assert first["instructions"] == "Be brief." and first["store"] is False
    assert first["tools"][0]["name"] == "get_weather" and first["reasoning"] == {"effort": "medium"}
    kinds = [item["type"] for item in second["input"]]
    assert kinds == ["message", "reasoning", "function_call", "function_call_output"]
    assert second["input"][1]["content"][0]["text"] == "Call it."
    assert second["input"][2]["call_id"] == second["input"][3]["call_id"]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ((401, {"error": {"message": "Invalid API key"}}), r"HTTP 401: Invalid API key"),
        ((404, {"error": {"message": "model gpt-oss-9b not found"}}), r"HTTP 404: model gpt-oss-9b not found"),
        ((200, b"<html>gateway</html>"), r"not JSON"),
        ((200, {"choices": []}), r"malformed Chat Completions reply"),
        ((200, {"choices": [{"message": {"tool_calls": [{"function": {}}]}}]}), r"malformed tool call"),
        ((200, {"error": "overloaded"}), r"reported an error: overloaded"),
    ],
)
def test_bad_replies_end_the_run_with_a_clear_model_error(standin, reply, expected):
    url, state = standin
    state.replies = [reply]
    agent = Agent(ServerRenderedModel(url, retries=0), tools=[get_weather])
    result = agent.run("hi")
    agent.close()
    assert result.stop_reason == "model_error"
    assert result.error is not None
    assert re.search(expected, result.error), result.error


def test_cut_at_max_tokens_is_not_a_finished_answer(standin):
    url, state = standin
    state.replies = [chat_reply(content="It is", finish="length")]
    agent = Agent(ServerRenderedModel(url), max_tokens=3)
    result = agent.run("hi")
    agent.close()
    assert result.stop_reason in ("max_tokens", "model_error") and result.final_text is None, result.stop_reason


def test_without_an_agent_the_preamble_is_asked_for(standin):
    url, _ = standin
    model = ServerRenderedModel(url)

    async def generate():
        return [
            t
            async for t in model.generate(
                render_prompt([user_message("hi")]), stop=stop_tokens(), sampling=SamplingParams()
            )
        ]

    with pytest.raises(ModelError, match="bind_preamble"):
        asyncio.run(generate())


def test_spec_needs_an_address():
    with pytest.raises(ModelError, match="needs a server address"):
        load_model("openai-chat+groq#gpt-oss-120b")


def test_no_server_running_names_the_routes_without_one():
    from helpers.processes import free_port

    agent = Agent(load_model(f"http://127.0.0.1:{free_port()}/v1"))
    agent.model.retries = 0
    result = agent.run("hi")
    agent.close()
    assert result.stop_reason == "model_error"
    assert "Is the server running?" in result.error
    assert "openai-chat+https://HOST/v1#MODEL" in result.error and "llamacpp:" in result.error
