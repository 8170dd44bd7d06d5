"""``harmony-agent mcp serve`` driven by the ``mcp`` SDK's own client, with our real tools behind it.

Over stdio (the subprocess a client such as Claude Desktop starts) and over
streamable HTTP on 127.0.0.1: list the tools, run python twice and see the
state kept, open a page of the local test site with the browser, and see that
two MCP sessions never share a kernel. In process, closing a session releases
its sandbox. And the system prompt a gpt-oss deployment builds from these
servers (the way the gpt-oss reference does) renders to the harmony text the
model was trained on.
"""

from __future__ import annotations

import contextlib
import os
import sys

import pytest

from helpers import ROOT

pytest.importorskip("mcp")

from mcp import Client, StdioServerParameters
from openai_harmony import (
    Conversation,
    DeveloperContent,
    Message,
    ReasoningEffort,
    Role,
    SystemContent,
    ToolDescription,
    ToolNamespaceConfig,
)

from examples.local_site import serve_site
from harmony_agent.harmony.encoding import decode, get_encoding
from harmony_agent.server.mcp import ToolServer
from harmony_agent.tools import BrowserTool, ComputerTool, PythonTool
from helpers.available import KINDS, require, unavailable
from helpers.processes import free_port, listening

SITE = ROOT / "examples" / "site"


def sandbox_kind() -> str:
    for kind in KINDS:
        if unavailable(kind) is None:
            return kind
    require(KINDS[-1])  # skips, or fails where CI requires the sandboxes
    return ""


def serve_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "harmony_agent.cli", "mcp", "serve", *arguments]


def stdio(*arguments: str) -> StdioServerParameters:
    command = serve_command(*arguments)
    return StdioServerParameters(
        command=command[0],
        args=command[1:],
        cwd=str(ROOT),
        env={"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")},
    )


def text(result) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


async def test_stdio_server_lists_tools_keeps_python_state_opens_a_local_page_and_isolates_sessions():
    kind = sandbox_kind()
    require("chromium")
    with serve_site() as (base, _hits):
        params = stdio(
            "--tools", "python,browser", "--sandbox", kind, "--allow", "127.0.0.1", "--search", f"local:{SITE}@{base}"
        )
        async with Client(params) as first, Client(params) as second:
            assert first.server_info.name == "harmony-agent"
            tools = {tool.name: tool for tool in (await first.list_tools()).tools}
            trained = ToolNamespaceConfig.browser().tools
            for description in trained:  # gpt-oss's own names, descriptions and schemas
                assert tools[description.name].description == description.description
                assert tools[description.name].input_schema == description.parameters
            assert {"python", "click", "type"} <= set(tools)
            assert tools["python"].input_schema["required"] == ["code"]

            assert text(await first.call_tool("python", {"code": "x = 41"})).startswith("[no output")
            assert text(await first.call_tool("python", {"code": "x + 1"})) == "42"
            missing = await second.call_tool("python", {"code": "x"})
            assert missing.is_error and "NameError" in text(missing)  # another session, another kernel

            page = await first.call_tool("open", {"id": f"{base}/hours.html"})
            view = text(page)
            assert not page.is_error and view.startswith("[0] ") and "hours.html" in view.splitlines()[0]
            found = text(await first.call_tool("find", {"pattern": "Saturday"}))
            assert "match at L" in found
            nothing_open = await second.call_tool("find", {"pattern": "Saturday"})
            assert nothing_open.is_error and "no page is open" in text(nothing_open)


@contextlib.contextmanager
def http_serve(*arguments: str, transport: str = "http"):
    port = free_port()
    command = serve_command(*arguments, "--transport", transport, "--port", str(port))
    with listening(command, port, name="mcp serve", cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}):
        yield f"http://127.0.0.1:{port}/{'mcp' if transport == 'http' else 'sse'}"


async def test_http_server_keeps_state_per_mcp_session():
    kind = sandbox_kind()
    with http_serve("--tools", "python", "--sandbox", kind) as url:
        async with Client(url, mode="legacy") as first, Client(url, mode="legacy") as second:
            assert first.server_info.name == "python"  # one tool: the server is its harmony namespace
            assert [tool.name for tool in (await first.list_tools()).tools] == ["python"]
            await first.call_tool("python", {"code": "word = 'kept'"})
            await second.call_tool("python", {"code": "word = 'other'"})
            assert text(await first.call_tool("python", {"code": "word"})) == "'kept'"
            assert text(await second.call_tool("python", {"code": "word"})) == "'other'"
        # A sessionless (2026-protocol) client is told plainly that nothing is kept between its calls ...
        async with Client(url) as modern:
            answer = await modern.call_tool("python", {"code": "1 + 1"})
            assert text(answer).startswith("2") and "nothing it set up" in text(answer)
        # ... unless it names its session with x-session-id, as vLLM's tool server does.
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        async with (
            httpx2.AsyncClient(headers={"x-session-id": "conversation-1"}) as http,
            Client(streamable_http_client(url, http_client=http)) as named,
        ):
            await named.call_tool("python", {"code": "n = 5"})
            answer = await named.call_tool("python", {"code": "n * 2"})
            assert text(answer) == "10"


async def test_sse_server_serves_each_stream_its_own_tools_and_our_sse_client_uses_it():
    kind = sandbox_kind()
    with http_serve("--tools", "python", "--sandbox", kind, transport="sse") as url:
        from harmony_agent import Agent, ScriptedModel
        from harmony_agent.tools import MCPTools
        from helpers.completions import final

        def code(source: str) -> str:
            return f'<|channel|>commentary to=python.python <|constrain|>json<|message|>{{"code": "{source}"}}<|call|>'

        tool = MCPTools(url, namespace="python")  # the server's namespace, as vLLM's tool server makes it
        assert tool.spec.kind == "sse" and [d.name for d in tool.descriptions()] == ["python"]
        agent = Agent(ScriptedModel([code("y = 6"), code("y * 7"), final("42")]), tools=[tool])
        async with agent:
            run = await agent.arun("compute")
        answers = [e.content for e in run.events if e.type == "tool_result"]
        assert answers[1] == "42", answers
        from mcp.client.sse import sse_client

        async with Client(sse_client(url), mode="legacy") as other:  # another SSE stream: another kernel
            missing = await other.call_tool("python", {"code": "y"})
            assert missing.is_error and "NameError" in text(missing)


async def test_closing_an_mcp_session_releases_its_sandbox_and_browser_context():
    kind = sandbox_kind()
    require("chromium")
    from harmony_agent.tools.browser import NavigationPolicy

    made: list = []

    def python() -> PythonTool:
        made.append(PythonTool(kind))
        return made[-1]

    def browser() -> BrowserTool:
        made.append(BrowserTool(policy=NavigationPolicy(allow_domains=["127.0.0.1"], allow_addresses=["127.0.0.1"])))
        return made[-1]

    server = ToolServer({"python": python, "browser": browser})
    made.clear()  # the templates the listing was read from start nothing
    with serve_site() as (base, _hits):
        async with Client(server.server, mode="legacy") as client:
            assert text(await client.call_tool("python", {"code": "print('hi')"})) == "hi"
            assert not (await client.call_tool("open", {"id": f"{base}/about.html"})).is_error
            sandbox_tool, browser_tool = made
            assert sandbox_tool.sandbox.started and browser_tool.session is not None
            session = browser_tool.session
            assert session.context is not None
    # The connection closed, and with it the session's tools: the kernel and the browser context are gone.
    assert not sandbox_tool.sandbox.started and browser_tool.session is None and session.context is None


def reference_namespace(server_name: str, instructions: str | None, tools: list) -> ToolNamespaceConfig:
    """What the gpt-oss reference's build-system-prompt (and vLLM's tool server) makes of one MCP server."""

    def trim(schema: dict) -> dict:
        schema = {k: v for k, v in schema.items() if k != "title" and not (k == "default" and v is None)}
        if isinstance(schema.get("properties"), dict):
            schema["properties"] = {k: trim(v) for k, v in schema["properties"].items()}
        return schema

    kept = [
        tool
        for tool in tools
        if getattr(tool.annotations, "include_in_prompt", True) and (tool.meta or {}).get("include_in_prompt", True)
    ]
    return ToolNamespaceConfig(
        name=server_name,
        description=instructions,
        tools=[ToolDescription.new(t.name, t.description, parameters=trim(t.input_schema)) for t in kept],
    )


def system_text(*namespaces: ToolNamespaceConfig) -> str:
    content = SystemContent.new().with_reasoning_effort(ReasoningEffort.LOW).with_conversation_start_date("2026-01-01")
    for namespace in namespaces:
        content = content.with_tools(namespace)
    messages = [
        Message.from_role_and_content(Role.SYSTEM, content),
        Message.from_role_and_content(Role.DEVELOPER, DeveloperContent.new().with_instructions("")),
    ]
    return decode(get_encoding().render_conversation(Conversation.from_messages(messages)))


async def test_a_gpt_oss_tool_server_prompt_built_from_our_servers_is_the_trained_one():
    served = []
    for tools, options in (
        ({"browser": BrowserTool}, {"browser_actions": False}),
        ({"browser": BrowserTool}, {}),
        ({"python": PythonTool}, {}),
    ):
        server = ToolServer(tools, **options)
        async with Client(server.server, mode="legacy") as client:
            listing = (await client.list_tools()).tools
            served.append(reference_namespace(client.server_info.name, client.instructions, listing))
    plain, with_actions, python = served
    # Exactly the browser and python gpt-oss was trained on (python's description states this sandbox's facts).
    trained_python = PythonTool().namespace_config()
    assert system_text(plain, python) == system_text(ToolNamespaceConfig.browser(), trained_python)
    assert "namespace browser" in system_text(plain) and "## python" in system_text(python)
    # With the page actions: the same text our own agent renders for its browser.
    assert system_text(with_actions) == system_text(BrowserTool().namespace_config())


async def test_computer_tool_served_beside_the_browser_gets_its_own_display_per_session():
    require("desktop")
    made: list[ComputerTool] = []

    def computer() -> ComputerTool:
        made.append(ComputerTool())
        return made[-1]

    server = ToolServer({"computer": computer, "browser": BrowserTool})
    made.clear()
    async with Client(server.server, mode="legacy") as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        # The browser keeps gpt-oss's names; the computer's click and scroll would clash, so its tools are prefixed.
        assert {"search", "open", "find", "click", "computer_observe", "computer_click", "computer_type_text"} <= set(
            names
        )
        seen = await client.call_tool("computer_observe", {})
        assert not seen.is_error and text(seen).startswith("Screen 1280x800.")
        wrong = await client.call_tool("computer_click", {"x": 100000, "y": 5})
        assert wrong.is_error and "is outside the screen" in text(wrong)
        assert len(made) == 1 and made[0].display.started
    assert not made[0].display.started  # the session closed, and its display with it


async def test_http_sessions_that_go_away_without_closing_are_released_and_capped():
    """Clients that call python and vanish (no DELETE): their kernels go after the idle timeout; past the cap, a clear no."""
    import threading
    import time

    import anyio
    import uvicorn
    from mcp.client.streamable_http import streamable_http_client

    kind = sandbox_kind()
    made: list[PythonTool] = []

    def python() -> PythonTool:
        made.append(PythonTool(kind))
        return made[-1]

    server = ToolServer({"python": python}, idle_seconds=8, max_sessions=3)
    made.clear()
    port = free_port()
    web = uvicorn.Server(uvicorn.Config(server.http_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    while not web.started:
        await anyio.sleep(0.05)
    url = f"http://127.0.0.1:{port}/mcp"
    try:

        async def call_and_vanish(number: int) -> None:
            async with Client(streamable_http_client(url, terminate_on_close=False), mode="legacy") as client:
                assert text(await client.call_tool("python", {"code": f"print({number} * 2)"})) == str(number * 2)

        async with anyio.create_task_group() as group:  # at once, so none is idle before the last has called
            for number in range(3):
                group.start_soon(call_and_vanish, number)
        assert len(made) == 3 and all(tool.sandbox.started for tool in made)
        # Three sessions are still open (nobody closed them): a fourth is refused, and starts no kernel.
        with pytest.raises(Exception) as refused:
            async with Client(streamable_http_client(url, terminate_on_close=False), mode="legacy") as client:
                await client.call_tool("python", {"code": "1"})
        assert "Too many open sessions" in repr(refused.value) or "503" in repr(refused.value), repr(refused.value)
        assert len(made) == 3
        deadline = time.monotonic() + 30
        while any(tool.sandbox.started for tool in made):
            assert time.monotonic() < deadline, "idle sessions still hold their kernels"
            await anyio.sleep(0.2)
        # Their room is free again once their closing ends: the SDK frees a session's slot only after its
        # tools have closed (a container takes a moment to go), so a client arriving meanwhile is told to retry.
        while True:
            try:
                async with Client(streamable_http_client(url), mode="legacy") as client:
                    assert text(await client.call_tool("python", {"code": "print('again')"})) == "again"
                break
            except Exception as error:
                refused_again = "Too many open sessions" in repr(error) or "503" in repr(error)
                if not refused_again or time.monotonic() > deadline:
                    raise
                await anyio.sleep(0.2)
    finally:
        web.should_exit = True
        thread.join(20)
    assert not any(tool.sandbox.started for tool in made)


async def test_sse_streams_past_the_cap_are_refused():
    import threading

    import anyio
    import httpx
    import uvicorn
    from mcp.client.sse import sse_client

    kind = sandbox_kind()
    made: list[PythonTool] = []

    def python() -> PythonTool:
        made.append(PythonTool(kind))
        return made[-1]

    server = ToolServer({"python": python}, max_sessions=1)
    made.clear()
    port = free_port()
    web = uvicorn.Server(uvicorn.Config(server.sse_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    while not web.started:
        await anyio.sleep(0.05)
    url = f"http://127.0.0.1:{port}/sse"
    try:
        async with Client(sse_client(url), mode="legacy") as first:
            assert text(await first.call_tool("python", {"code": "print(7)"})) == "7"
            async with httpx.AsyncClient(timeout=10) as http:
                refused = await http.get(url)
            assert refused.status_code == 503 and "Too many open sessions" in refused.text
        # The first stream closed: there is room again once the server has seen it go.
        deadline = anyio.current_time() + 20
        while True:
            try:
                async with Client(sse_client(url), mode="legacy") as again:
                    assert text(await again.call_tool("python", {"code": "print(8)"})) == "8"
                break
            except Exception:
                assert anyio.current_time() < deadline, "the closed stream still counts against the cap"
                await anyio.sleep(0.5)
    finally:
        web.should_exit = True
        thread.join(20)
    assert len(made) == 2 and not any(tool.sandbox.started for tool in made)
