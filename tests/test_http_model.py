"""OpenAICompatibleModel against a local HTTP fixture speaking the documented fields.

The fixture implements vLLM's raw ``/v1/completions`` (token-id prompt,
``stop_token_ids``, SSE chunks with ``token_ids`` and ``stop_reason``), a
text-only variant (as llama.cpp answers), and Ollama's ``/api/generate``
with ``raw: true``. It listens on 127.0.0.1 only.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent import Agent, OpenAICompatibleModel
from agent.harmony import decode, encode_completion
from conftest import call, final

CALL_ID, RETURN_ID = 200012, 200002


class Fixture:
    def __init__(self, completions, mode="vllm"):
        self.completions = list(completions)
        self.mode = mode
        self.requests = []

    def next_tokens(self):
        return encode_completion(self.completions.pop(0))


def make_handler(fixture):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status, body, content_type="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/v1/models":
                return self._send(200, json.dumps({"data": [{"id": "gpt-oss-fixture"}]}).encode())
            self._send(404, b"{}")

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fixture.requests.append((self.path, body))
            if fixture.mode == "error":
                return self._send(500, b'{"error": "engine crashed"}')
            tokens = fixture.next_tokens()
            stop = tokens[-1]
            content = tokens[:-1]  # servers leave the stop token out of the text
            if self.path == "/v1/completions":
                assert isinstance(body["prompt"], list) and all(isinstance(t, int) for t in body["prompt"])
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for i in range(0, len(content), 3):
                    piece = content[i : i + 3]
                    choice = {"index": 0, "text": decode(piece), "finish_reason": None}
                    if fixture.mode == "vllm":
                        choice["token_ids"] = piece
                    self.wfile.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
                done = {"index": 0, "text": "", "finish_reason": "stop"}
                if fixture.mode == "vllm":
                    done["stop_reason"] = stop
                    done["token_ids"] = []
                self.wfile.write(f"data: {json.dumps({'choices': [done]})}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
            elif self.path == "/api/generate":
                assert body["raw"] is True and isinstance(body["prompt"], str)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.end_headers()
                text = decode(content)
                for i in range(0, len(text), 7):
                    self.wfile.write((json.dumps({"response": text[i : i + 7], "done": False}) + "\n").encode())
                self.wfile.write((json.dumps({"response": "", "done": True, "done_reason": "stop"}) + "\n").encode())
            else:
                self._send(404, b"{}")

    return Handler


@pytest.fixture
def server():
    servers = []

    def start(completions, mode="vllm"):
        fixture = Fixture(completions, mode)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fixture))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}", fixture

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


SCRIPT = [call("get_weather", '{"city":"Paris"}'), final("It is 21 degrees in Paris.")]


@pytest.mark.parametrize("mode", ["vllm", "text"])
def test_agent_run_through_completions_server(server, weather_tool, mode):
    url, fixture = server(SCRIPT, mode)
    agent = Agent(OpenAICompatibleModel(url + "/v1"), tools=[weather_tool])
    result = agent.run("Weather in Paris?")
    assert result.final_text == "It is 21 degrees in Paris."
    tool_result = next(e for e in result.events if e.type == "tool_result")
    assert not tool_result.is_error and '"temperature": 21' in tool_result.content
    path, first = fixture.requests[0]
    assert path == "/v1/completions" and first["model"] == "gpt-oss-fixture"
    assert sorted(first["stop_token_ids"]) == sorted([CALL_ID, RETURN_ID])
    assert first["temperature"] == 1.0 and first["top_p"] == 1.0 and first["stream"] is True
    assert first["skip_special_tokens"] is False
    # The second prompt extends the first: the server sees the model's own tokens.
    second = fixture.requests[1][1]["prompt"]
    assert second[: len(first["prompt"])] == first["prompt"]
    generation = next(e for e in result.events if e.type == "generation")
    assert generation.stop_token == CALL_ID


def test_ollama_native_raw_generate(server, weather_tool):
    url, fixture = server(SCRIPT)
    model = OpenAICompatibleModel(url, flavor="ollama", model="gpt-oss:20b")
    result = Agent(model, tools=[weather_tool]).run("Weather in Paris?")
    assert result.final_text == "It is 21 degrees in Paris."
    path, body = fixture.requests[0]
    assert path == "/api/generate" and body["model"] == "gpt-oss:20b"
    assert body["prompt"].endswith("<|start|>assistant")
    assert sorted(body["options"]["stop"]) == ["<|call|>", "<|return|>"]


def test_server_error_is_a_model_error_stop(server):
    url, _ = server([], mode="error")
    result = Agent(OpenAICompatibleModel(url)).run("hi")
    assert result.stop_reason == "model_error"
    assert "HTTP 500" in next(e for e in result.events if e.type == "error").message


def test_unreachable_server_is_a_model_error_stop():
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    result = Agent(OpenAICompatibleModel("http://127.0.0.1:9", model="m")).run("hi")
    assert result.stop_reason == "model_error"
    assert "could not reach" in next(e for e in result.events if e.type == "error").message
