"""OpenAICompatibleModel against a local HTTP server speaking the documented fields.

The server implements vLLM's raw ``/v1/completions`` (token-id prompt,
``stop_token_ids``, SSE chunks with ``token_ids`` and ``stop_reason``, the
``include_usage`` record, ``/v1/models`` with ``max_model_len``), a text-only
variant (as llama.cpp answers), and Ollama's ``/api/generate`` with
``raw: true``. Tests queue misbehaviours (HTTP 429/5xx, dropped connections,
stalls, an error inside a stream, a server that ignores stop tokens) in front
of the normal answers. It listens on 127.0.0.1 only. The same backend against
a real vLLM is tests/test_vllm.py.
"""

import asyncio
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harmony_agent import Agent, OpenAICompatibleModel
from harmony_agent.harmony.encoding import decode, encode_completion, stop_tokens
from harmony_agent.models import ModelError, SamplingParams
from helpers.completions import call, final

CALL_ID, RETURN_ID = 200012, 200002


class Fixture:
    def __init__(self, completions, mode="vllm", models=None):
        self.completions = list(completions)
        self.mode = mode
        self.requests = []  # POSTs: (path, body)
        self.gets = []
        #: Behaviours for the next POSTs, in order: callables (handler, body) -> None.
        self.queue = []
        self.models = models if models is not None else [{"id": "gpt-oss-fixture"}]
        self.usage = None  # a usage record to stream after the finish chunk
        self.disconnected = threading.Event()

    def next_tokens(self):
        return encode_completion(self.completions.pop(0))


def write_chunk(handler, data: bytes):
    """One piece of a chunked HTTP/1.1 body: the server keeps the connection alive, as uvicorn does."""
    handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
    handler.wfile.flush()


def sse(handler, payload):
    write_chunk(handler, f"data: {json.dumps(payload)}\n\n".encode())


def start_sse(handler, content_type="text/event-stream"):
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()


def end_sse(handler, done=True):
    if done:
        write_chunk(handler, b"data: [DONE]\n\n")
    handler.wfile.write(b"0\r\n\r\n")
    handler.wfile.flush()


def make_handler(fixture):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _send(self, status, body, content_type="application/json", headers=()):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            fixture.gets.append(self.path)
            if self.path == "/v1/models" and fixture.models is not None:
                return self._send(200, json.dumps({"object": "list", "data": fixture.models}).encode())
            self._send(404, b"{}")

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fixture.requests.append((self.path, body))
            if fixture.queue:
                return fixture.queue.pop(0)(self, body)
            if fixture.mode == "error":
                return self._send(500, b'{"error": "engine crashed"}')
            tokens = fixture.next_tokens()
            stop = tokens[-1]
            content = tokens[:-1]  # servers leave the stop token out of the text
            if self.path == "/v1/completions":
                assert isinstance(body["prompt"], list) and all(isinstance(t, int) for t in body["prompt"])
                start_sse(self)
                for i in range(0, len(content), 3):
                    piece = content[i : i + 3]
                    choice = {"index": 0, "text": decode(piece), "finish_reason": None}
                    if fixture.mode == "vllm":
                        choice["token_ids"] = piece
                    sse(self, {"choices": [choice]})
                done = {"index": 0, "text": "", "finish_reason": "stop"}
                if fixture.mode == "vllm":  # vLLM shows the stop token in token_ids of the last chunk
                    done["stop_reason"] = stop
                    done["token_ids"] = [stop]
                sse(self, {"choices": [done]})
                time.sleep(0.05)  # a real server's records after the stop token come a moment later
                if fixture.usage is not None:
                    sse(self, {"choices": [], "usage": fixture.usage})
                end_sse(self)
            elif self.path == "/api/generate":
                assert body["raw"] is True and isinstance(body["prompt"], str)
                start_sse(self, "application/x-ndjson")
                text = decode(content)
                for i in range(0, len(text), 7):
                    write_chunk(self, (json.dumps({"response": text[i : i + 7], "done": False}) + "\n").encode())
                write_chunk(self, (json.dumps({"response": "", "done": True, "done_reason": "stop"}) + "\n").encode())
                end_sse(self, done=False)
            else:
                self._send(404, b"{}")

    return Handler


@pytest.fixture
def server():
    servers = []

    def start(completions, mode="vllm", **options):
        fixture = Fixture(completions, mode, **options)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fixture))
        httpd.daemon_threads = True
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


# -- streams, retries, timeouts and errors against misbehaving servers ---------------------------

PROMPT = [200006, 1428, 200008, 12194, 200007, 200006, 173781]  # <|start|>user<|message|>…<|end|><|start|>assistant


def collect(model, prompt=PROMPT, **sampling):
    """Run one generation on a fresh event loop; return (tokens, exception handler reports)."""
    reports = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reports.append(context))
        try:
            return [t async for t in model.generate(prompt, stop=stop_tokens(), sampling=SamplingParams(**sampling))]
        finally:
            await model.aclose()

    return asyncio.run(main()), reports


def token_chunk(tokens, finish=None, **extra):
    return {"choices": [{"index": 0, "text": decode(tokens), "token_ids": tokens, "finish_reason": finish, **extra}]}


def answer(text):
    """A well-behaved streamed answer (vLLM's shape) for the queue."""
    tokens = encode_completion(final(text))

    def behave(handler, body):
        start_sse(handler)
        sse(handler, token_chunk(tokens[:-1]))
        sse(handler, token_chunk([tokens[-1]], "stop", stop_reason=tokens[-1]))
        end_sse(handler)

    return behave


def status(code, message, headers=()):
    def behave(handler, body):
        handler._send(code, json.dumps({"error": {"message": message, "code": code}}).encode(), headers=headers)

    return behave


def hang_up(handler, body):
    """Close the connection without an answer (a server restarting)."""
    handler.close_connection = True
    handler.connection.shutdown(2)


def test_stream_is_closed_at_the_stop_token_even_when_the_server_goes_on(server):
    url, fixture = server([])
    tokens = encode_completion(final("Hi."))

    def ignores_stop(handler, body):  # like a server without stop_token_ids: it keeps streaming
        start_sse(handler)
        try:
            sse(handler, token_chunk(tokens))
            for _ in range(150):
                time.sleep(0.02)
                sse(handler, token_chunk(encode_completion(" more")))
            end_sse(handler)
        except (BrokenPipeError, ConnectionResetError):
            fixture.disconnected.set()

    fixture.queue.append(ignores_stop)
    model = OpenAICompatibleModel(url, model="m")
    hung_up = []

    async def main():
        out = [t async for t in model.generate(PROMPT, stop=stop_tokens(), sampling=SamplingParams())]
        # Still inside the loop, with nothing else awaited: the server must already see the hang-up.
        hung_up.append(await asyncio.to_thread(fixture.disconnected.wait, 1.5))
        return out

    assert asyncio.run(main()) == tokens
    assert hung_up == [True], "the response was still open after generate() returned"


def test_server_busy_is_retried_with_backoff_and_every_retry_is_visible(server):
    url, fixture = server([])
    fixture.queue += [status(503, "loading"), status(429, "slow down", [("Retry-After", "0.3")]), hang_up, answer("ok")]
    model = OpenAICompatibleModel(url, model="m", backoff=0.01)
    seen = []
    model.on_retry = seen.append
    began = time.perf_counter()
    tokens, reports = collect(model)
    assert decode(tokens) == final("ok") and reports == []
    retries = model.last_stats.retries
    assert seen == retries and [r.attempt for r in retries] == [1, 2, 3]
    assert "HTTP 503: loading" in retries[0].reason and "HTTP 429: slow down" in retries[1].reason
    assert "could not reach" in retries[2].reason
    assert retries[1].delay_s == pytest.approx(0.3) and time.perf_counter() - began >= 0.3  # Retry-After honoured
    assert retries[0].delay_s <= 0.01 and retries[2].delay_s <= 0.04
    assert len(fixture.requests) == 4


def test_retries_are_bounded_and_client_errors_are_not_retried(server):
    url, fixture = server([])
    fixture.queue += [status(502, "bad gateway")] * 5
    model = OpenAICompatibleModel(url, model="m", retries=2, backoff=0.01)
    with pytest.raises(ModelError, match=r"HTTP 502: bad gateway \(gave up after 3 attempts\)"):
        collect(model)
    assert len(fixture.requests) == 3 and len(model.last_stats.retries) == 2

    fixture.requests.clear()
    fixture.queue[:] = [status(400, "max_tokens is too large")]
    with pytest.raises(ModelError, match="HTTP 400: max_tokens is too large"):
        collect(model)
    assert len(fixture.requests) == 1 and model.last_stats.retries == []

    # A Retry-After longer than the backend would wait fails at once, saying so.
    fixture.queue[:] = [status(503, "maintenance", [("Retry-After", "3600")])]
    with pytest.raises(ModelError, match="Retry-After 3600 s is longer than max_backoff"):
        collect(model)


def test_unreachable_server_retries_then_gives_up():
    model = OpenAICompatibleModel("http://127.0.0.1:9", model="m", retries=2, backoff=0.01)
    with pytest.raises(ModelError, match=r"could not reach the model server .* \(gave up after 3 attempts\)"):
        collect(model)
    assert len(model.last_stats.retries) == 2


def test_a_stalled_server_times_out_per_request(server):
    url, fixture = server([])

    def stall_after_headers(handler, body):
        start_sse(handler)
        sse(handler, token_chunk(encode_completion("<|channel|>final")))
        time.sleep(2)
        handler.close_connection = True

    def stall_before_headers(handler, body):
        time.sleep(2)
        handler.close_connection = True

    fixture.queue += [stall_after_headers, stall_before_headers]
    model = OpenAICompatibleModel(url, model="m", timeout=0.3)
    began = time.perf_counter()
    with pytest.raises(ModelError, match=r"stopped sending after 2 tokens: no data for 0\.3 s"):
        collect(model)
    with pytest.raises(ModelError, match=r"did not answer within 0\.3 s"):
        collect(model)
    assert time.perf_counter() - began < 1.5
    assert len(fixture.requests) == 2  # a timeout is not retried: the server may be busy with it


@pytest.mark.parametrize(
    "error",
    [
        {"error": {"message": "engine overloaded", "type": "InternalServerError", "code": 500}},  # vLLM, OpenAI
        {
            "object": "error",
            "message": "engine overloaded",
            "type": "BadRequestError",
            "code": 400,
        },  # vLLM's ErrorResponse
        {"error": "engine overloaded"},  # llama.cpp, Ollama
    ],
)
def test_an_error_inside_a_stream_is_the_servers_error(server, error):
    url, fixture = server([])

    def fails_midway(handler, body):
        start_sse(handler)
        sse(handler, token_chunk(encode_completion("<|channel|>final")))
        sse(handler, error)
        end_sse(handler)

    fixture.queue.append(fails_midway)
    with pytest.raises(ModelError) as caught:
        collect(OpenAICompatibleModel(url, model="m"))
    assert "engine overloaded" in str(caught.value) and "malformed" not in str(caught.value)


def test_context_window_and_max_tokens_come_from_the_server(server):
    url, fixture = server(
        [final("a"), final("b"), final("c")], models=[{"id": "other"}, {"id": "tiny", "max_model_len": 300}]
    )
    model = OpenAICompatibleModel(url, model="tiny")
    asyncio.run(model.start())
    assert model.context_window == 300 and fixture.gets == ["/v1/models"]
    collect(model)  # max_tokens None: ask for the rest of the window, no more
    collect(model, max_tokens=10_000)
    collect(model, max_tokens=5)
    assert [body["max_tokens"] for _, body in fixture.requests] == [300 - len(PROMPT)] * 2 + [5]
    with pytest.raises(
        ModelError, match=r"the prompt \(300 tokens\) fills the model server's context window \(300 tokens\)"
    ):
        collect(model, prompt=[1] * 300)
    # A smaller window given by the user wins; the server's still caps a larger one.
    assert _window(url, "tiny", 200) == 200 and _window(url, "tiny", 100_000) == 300


def _window(url, name, given):
    model = OpenAICompatibleModel(url, model=name, context_window=given)
    asyncio.run(model.start())
    return model.context_window


def test_without_a_reported_window_max_tokens_is_left_to_the_server(server):
    url, fixture = server([final("a")], models=[{"id": "m"}])
    model = OpenAICompatibleModel(url)
    collect(model)  # generate() starts the model itself when nobody did
    assert model.model_name == "m" and model.context_window == 131072
    body = fixture.requests[0][1]
    assert "max_tokens" not in body and body["model"] == "m"


def test_cached_and_prefilled_tokens_come_from_the_servers_usage(server):
    url, fixture = server([final("a"), final("b")])
    fixture.usage = {
        "prompt_tokens": len(PROMPT),
        "completion_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 4},
    }
    model = OpenAICompatibleModel(url, model="m")
    tokens, _ = collect(model)
    assert tokens[-1] == RETURN_ID
    assert fixture.requests[0][1]["stream_options"] == {"include_usage": True}
    stats = model.last_stats
    assert (stats.prompt_tokens, stats.cached_tokens, stats.prefilled_tokens) == (len(PROMPT), 4, len(PROMPT) - 4)
    fixture.usage = None  # a server that does not report: the whole prompt counts as prefilled
    collect(model)
    assert (model.last_stats.cached_tokens, model.last_stats.prefilled_tokens) == (0, len(PROMPT))


def test_one_model_serves_several_event_loops(server, weather_tool):
    # Sessions may run on a loop thread of their own: an httpx client must never cross loops.
    url, fixture = server(SCRIPT * 4)
    # An error answer is read to its end, so its keep-alive connection goes back to the
    # pool, where the next run (a new loop) finds it.
    fixture.queue.append(status(400, "bad request"))
    model = OpenAICompatibleModel(url, model="m")
    agent = Agent(model, tools=[weather_tool])
    first = agent.run("Weather?")
    assert (
        first.stop_reason == "model_error"
        and "bad request" in next(e for e in first.events if e.type == "error").message
    )
    assert agent.run("Weather?").final_text == "It is 21 degrees in Paris."  # a second asyncio.run

    results = []

    def in_thread():
        async def two_generations():
            return [await _generate_all(model) for _ in range(2)]

        results.append(asyncio.run(two_generations()))

    threads = [threading.Thread(target=in_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 2 and all(len(r) == 2 and r[0] for r in results)


async def _generate_all(model):
    return [t async for t in model.generate(PROMPT, stop=stop_tokens(), sampling=SamplingParams())]


def test_a_run_left_at_run_end_leaves_no_stream_to_clean_up(server, weather_tool, caplog):
    # The CLI stops reading events at run_end and closes the agent, as any UI may.
    # A stream still open then was closed twice at shutdown: "aclose(): asynchronous
    # generator is already running". Whichever loop the session runs on, asyncio logs such
    # reports on its "asyncio" logger.
    url, _fixture = server(SCRIPT)
    agent = Agent(OpenAICompatibleModel(url + "/v1"), tools=[weather_tool])  # as the CLI builds it

    async def main():
        try:
            async for event in agent.stream("Weather?"):
                if event.type == "run_end":
                    return event.stop_reason
        finally:
            await agent.aclose()

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        assert asyncio.run(main()) == "final"
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


def test_a_server_without_a_model_listing_keeps_the_defaults(server):
    url, fixture = server([final("a")], models=None)  # GET /v1/models answers 404
    model = OpenAICompatibleModel(url, model="m")
    tokens, reports = collect(model)
    assert tokens[-1] == RETURN_ID and reports == []
    assert fixture.gets == ["/v1/models"] and model.context_window == 131072
    assert "max_tokens" not in fixture.requests[0][1]


@pytest.mark.parametrize("record", ["{not json", '{"choices": "oops"}', '{"choices": [{"token_ids": ["x"]}]}'])
def test_a_malformed_chunk_is_a_clear_error(server, record):
    url, fixture = server([])

    def garbles(handler, body):
        start_sse(handler)
        write_chunk(handler, f"data: {record}\n\n".encode())
        end_sse(handler)

    fixture.queue.append(garbles)
    with pytest.raises(ModelError, match="malformed"):
        collect(OpenAICompatibleModel(url, model="m"))
