"""MCPTools against a real MCP server written with the ``mcp`` SDK (examples/mcp_demo_server.py).

The server runs as a subprocess over stdio, and over streamable HTTP on
127.0.0.1; an Agent with a ScriptedModel calls its tools through MCPTools.
Nothing of MCP is faked.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT

pytest.importorskip("mcp")

from harmony_agent import Agent, ScriptedModel
from harmony_agent.harmony.encoding import decode, render_prompt
from harmony_agent.tools import MCPTools, ToolCall
from harmony_agent.tools.mcp import harmony_names, parse_spec
from helpers.completions import call, final
from helpers.processes import free_port, listening

STDIO = f"stdio:{sys.executable} -m examples.mcp_demo_server"


def demo(namespace: str | None = None, **options) -> MCPTools:
    return MCPTools(STDIO, namespace, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, **options)


def results(run) -> list:
    return [e for e in run.events if e.type == "tool_result"]


def named(namespace: str, name: str, args: str = "{}") -> str:
    return f"<|channel|>commentary to={namespace}.{name} <|constrain|>json<|message|>{args}<|call|>"


@contextlib.contextmanager
def http_server():
    port = free_port()
    command = [sys.executable, "-m", "examples.mcp_demo_server", "--http", str(port)]
    with listening(
        command,
        port,
        name="the demo MCP server",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stop_timeout=10,
    ):
        yield f"http://127.0.0.1:{port}/mcp"


def test_specs_are_parsed_and_bad_ones_refused_clearly():
    assert parse_spec("stdio:npx -y server --root '/a b'").command == ("npx", "-y", "server", "--root", "/a b")
    assert parse_spec("http://127.0.0.1:9/mcp").kind == "http"
    assert parse_spec("http://127.0.0.1:9/sse").kind == "sse"
    assert parse_spec("sse:http://127.0.0.1:9/events").kind == "sse"
    for bad in ("stdio:", "ftp://x", "python server.py", "sse:nope"):
        with pytest.raises(ValueError, match=r"MCP|mcp"):
            parse_spec(bad)
    with pytest.raises(ValueError, match="namespace"):
        MCPTools("http://127.0.0.1:9/mcp", "no spaces")
    assert harmony_names(["a.b", "a/b", "ok-name"]) == {"a_b": "a.b", "a_b_2": "a/b", "ok-name": "ok-name"}


def test_an_unreachable_server_is_a_clear_error_at_once():
    tool = MCPTools(f"http://127.0.0.1:{free_port()}/mcp", connect_timeout=5)
    with pytest.raises(Exception, match=r"cannot list the tools of MCP server http://127\.0\.0\.1"):
        Agent(ScriptedModel([final("x")]), tools=[tool])


def test_agent_calls_stdio_server_tools_text_structured_image_and_error(tmp_path):
    tool = demo(images=tmp_path / "images")
    model = ScriptedModel(
        [
            call("add", '{"a": 2, "b": 40}'),
            call("city_weather", '{"city": "Oslo"}'),
            call("red_square", '{"size": 3}'),
            call("city_weather", '{"city": "Atlantis"}'),
            call("add", '{"a": "x"}'),
            final("done"),
        ]
    )
    agent = Agent(model, tools=[tool], date="2026-01-01")
    # The server's raw schemas are offered, and rendered the way every function tool is.
    prompt = decode(render_prompt(agent.preamble()))
    assert "namespace functions" in prompt and "type add = (_: {" in prompt and "a: number" in prompt
    assert (
        "city: string" in prompt and "unit?: string" in prompt and "title" not in prompt.split("namespace functions")[1]
    )
    with agent:
        run = agent.run("use the tools")
    assert run.stop_reason == "final", run.error
    added, weather, image, missing, bad = results(run)
    assert added.content == "42.0" and not added.is_error
    assert json.loads(weather.content) == {"city": "Oslo", "temperature": 21.0, "unit": "celsius"}
    assert len(image.images) == 1 and Path(image.images[0]).read_bytes().startswith(b"\x89PNG")
    assert Path(image.images[0]).parent == tmp_path / "images" and "saved to" in image.content
    assert missing.is_error and "no weather station in Atlantis" in missing.content
    # The server's validation message reaches the model, naming what is wrong.
    assert bad.is_error and "valid number" in bad.content and "Field required" in bad.content


def test_agent_uses_a_streamable_http_server():
    with http_server() as url:
        tool = MCPTools(url)
        assert [d.name for d in tool.descriptions()][:2] == ["add", "city_weather"]
        agent = Agent(
            ScriptedModel([call("add", '{"a": 1, "b": 1}'), call("count", "{}"), call("count", "{}"), final("ok")]),
            tools=[tool],
        )
        with agent:
            run = agent.run("add")
        assert [r.content for r in results(run)] == ["2.0", "1", "2"]


def test_a_server_that_crashes_mid_call_is_a_tool_error_then_restarted():
    tool = demo()
    agent = Agent(
        ScriptedModel(
            [call("count", "{}"), call("count", "{}"), call("crash", "{}"), call("count", "{}"), final("recovered")]
        ),
        tools=[tool],
    )
    with agent:
        run = agent.run("crash it")
    first, second, crashed, after = results(run)
    assert (first.content, second.content) == ("1", "2")
    assert crashed.is_error and "stopped answering" in crashed.content and "started again" in crashed.content
    assert not after.is_error and after.content == "1"  # a new process: the count starts over
    assert run.stop_reason == "final"


@pytest.mark.parametrize("mode", ["legacy", "auto"])  # a notification on the connection / a 2026 listen subscription
def test_tool_list_changes_are_picked_up_between_steps(mode):
    tool = demo("demo", mode=mode)
    agent = Agent(
        ScriptedModel(
            [
                named("demo", "count"),
                named("demo", "unlock"),
                named("demo", "count"),
                named("demo", "secret"),
                final("ok"),
            ]
        ),
        tools=[tool],
        date="2026-01-01",
    )
    assert "namespace demo" in decode(render_prompt(agent.preamble()))  # a namespace of its own, in the system message
    with agent:
        run = agent.run("unlock")
        counted, unlocked, removed, secret = results(run)
        assert counted.content == "1" and unlocked.content == "unlocked"
        assert removed.is_error and "no tool 'count' any more" in removed.content and "demo.secret" in removed.content
        assert "changed its tools" in removed.content and "new tools: demo.secret" in removed.content
        assert secret.content == "swordfish" and not secret.is_error
        # A new conversation's preamble lists what the server offers now.
        assert "type secret" in decode(render_prompt(agent.preamble()))
        assert "type count" not in decode(render_prompt(agent.preamble()))


async def test_fresh_copies_connect_separately_and_close():
    tool = demo()
    names = [d.name for d in tool.descriptions()]
    copy = tool.fresh()
    assert copy is not tool and [d.name for d in copy.descriptions()] == names and copy._client is None
    await copy.start()
    await tool.start()
    try:
        one = await copy.process(ToolCall("functions.count", "commentary", "{}"))
        two = await copy.process(ToolCall("functions.count", "commentary", "{}"))
        other = await tool.process(ToolCall("functions.count", "commentary", "{}"))
        assert (one.output, two.output, other.output) == ("1", "2", "1")  # two server processes
    finally:
        await copy.aclose()
        await tool.aclose()
    assert copy._runner is None and tool._runner is None


def test_in_the_functions_namespace_a_new_tool_is_callable_at_once_and_a_removed_one_refused():
    tool = demo()
    agent = Agent(
        ScriptedModel([call("unlock", "{}"), call("secret", "{}"), call("count", "{}"), final("ok")]), tools=[tool]
    )
    with agent:
        run = agent.run("unlock")
        unlocked, secret, removed = results(run)
        assert unlocked.content == "unlocked"
        # The router did not know `functions.secret`: it asked the tools to list again, and routed it.
        assert not secret.is_error and "swordfish" in secret.content, secret.content
        assert "changed its tools" in secret.content and "new tools: functions.secret" in secret.content
        assert removed.is_error and "no tool 'count' any more" in removed.content
        assert "functions.secret" in agent.session().router.available()


def test_a_call_that_gets_no_answer_in_time_is_abandoned_and_the_server_kept():
    tool = demo(call_timeout=2)
    agent = Agent(
        ScriptedModel([call("count", "{}"), call("wait", '{"seconds": 30}'), call("count", "{}"), final("ok")]),
        tools=[tool],
    )
    started = time.monotonic()
    with agent:
        run = agent.run("wait")
    first, slow, after = results(run)
    assert slow.is_error and "no answer within 2 s" in slow.content
    assert (first.content, after.content) == ("1", "2")  # the same server process answered before and after
    assert time.monotonic() - started < 25
