"""One runtime per process: sessions, tools and shared things on one event loop, whoever calls.

Each test is a symptom of the old design (a loop and a thread per session):
thread counts that grew with open sessions, an MCP server started on the
user's loop that no session could use, a user's sandbox that broke from
another thread. Real MCP servers (examples/mcp_demo_server.py over stdio) and
real bubblewrap sandboxes; the model is scripted.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading

import pytest

from harmony_agent import Agent, PolicyModel, ScriptedModel
from helpers import ROOT
from helpers.available import require
from helpers.completions import call, final

PYTHON_CALL = "<|channel|>analysis to=python code<|message|>print(6*7)<|call|>"
STDIO = f"stdio:{sys.executable} -m examples.mcp_demo_server"


def say_done(messages):
    return final("done")


def tool_results(result) -> list[str]:
    return [e.content for e in result.events if e.type == "tool_result"]


def test_a_hundred_sessions_open_at_once_and_closed_leave_the_thread_count_where_it_started():
    agent = Agent(PolicyModel(say_done))
    with agent.session() as warm:  # the process's runtime (one thread) starts at first use
        assert warm.run("go").final_text == "done"
    started = threading.active_count()

    async def open_run_close() -> tuple[int, int]:
        sessions = [agent.session() for _ in range(100)]
        results = await asyncio.gather(*(s.arun("go") for s in sessions))
        assert [r.final_text for r in results] == ["done"] * 100
        peak = threading.active_count()
        for session in sessions[:50]:
            await session.aclose()
        for session in sessions[50:]:
            await asyncio.to_thread(session.close)  # the blocking form, from worker threads
        return peak, len({id(s._runtime) for s in sessions})

    peak, runtimes = asyncio.run(open_run_close())
    agent.close()
    assert runtimes == 1
    # asyncio.run's own executor (for the blocking closes) is shut down when it returns.
    assert peak <= started, f"{peak - started} more threads with 100 sessions open"
    assert threading.active_count() == started


def _mcp(**options):
    from harmony_agent.tools import MCPTools

    return MCPTools(STDIO, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, **options)


@pytest.mark.slow  # a real MCP server in a subprocess
def test_an_mcp_server_entered_on_the_users_loop_works_inside_agent_arun():
    pytest.importorskip("mcp")

    async def main() -> tuple[list[str], str]:
        async with _mcp() as server:
            agent = Agent(ScriptedModel([call("add", '{"a": 2, "b": 3}'), final("five")]), tools=[server])
            result = await asyncio.wait_for(agent.arun("add 2 and 3"), 60)
            await agent.aclose()  # the agent leaves the closing to the `async with` that entered it
            from harmony_agent.tools import ToolCall

            after = await server.process(ToolCall("functions.add", None, '{"a": 1, "b": 1}'))
            return tool_results(result), after.text()

    outputs, after = asyncio.run(main())
    assert outputs == ["5.0"], outputs
    assert after == "2.0"


@pytest.mark.slow  # a real MCP server in a subprocess
def test_an_mcp_server_started_on_the_users_loop_works_from_a_worker_thread_and_its_loop():
    pytest.importorskip("mcp")

    async def main() -> list[str]:
        server = _mcp()
        line = await server.start()
        assert "add" in line
        agent = Agent(
            ScriptedModel([call("add", '{"a": 1, "b": 2}'), final("3"), call("add", '{"a": 3, "b": 4}'), final("7")]),
            tools=[server],
        )
        first = await asyncio.wait_for(asyncio.to_thread(agent.run, "add"), 60)  # blocking, from a thread
        second = await asyncio.wait_for(agent.arun("add", previous=first), 60)  # async, from this loop
        await agent.aclose()
        await server.aclose()
        return tool_results(first) + tool_results(second)

    assert asyncio.run(main()) == ["3.0", "7.0"]


@pytest.mark.slow  # real MCP servers in subprocesses
def test_an_mcp_connection_is_shared_by_sessions_or_owned_by_each_as_the_user_says():
    pytest.importorskip("mcp")

    def counts(server) -> list[str]:
        agent = Agent(ScriptedModel([call("count", "{}"), final("a"), call("count", "{}"), final("b")]), tools=[server])
        with agent.session() as one, agent.session() as two:
            seen = tool_results(one.run("count")) + tool_results(two.run("count"))
            assert one.tools[0] is two.tools[0] if server.shared else one.tools[0] is not two.tools[0]
        agent.close()
        return seen

    assert counts(_mcp()) == ["1", "1"]  # a server process per session
    shared = _mcp(shared=True)
    assert counts(shared) == ["1", "2"]  # one server process, its state seen by both sessions
    assert shared._client is None  # closed with the agent that used it


def test_a_python_tool_entered_with_with_runs_on_the_runtime_and_is_closed_on_leaving():
    require("bubblewrap")
    from harmony_agent.sandboxes import LocalSandbox
    from harmony_agent.tools import PythonTool, ToolCall

    with PythonTool(sandbox=LocalSandbox(isolation="bubblewrap")) as tool:
        assert tool.sandbox is not None and tool.sandbox.started
        reply = asyncio.run(tool.process(ToolCall("python", "analysis", "print(6*7)")))  # a loop of its own
        again = asyncio.run(tool.process(ToolCall("python", "analysis", "print(7*7)")))  # and another one
    assert (reply.output.strip(), again.output.strip()) == ("42", "49")
    assert not tool.sandbox.started


def _run_in_thread(agent) -> object:
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["result"] = agent.run("compute")
        except BaseException as exc:  # what escaped Agent.run
            outcome["error"] = exc

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(90)
    assert not worker.is_alive(), "the run did not end"
    assert "error" not in outcome, f"{type(outcome['error']).__name__} escaped Agent.run: {outcome['error']}"
    return outcome["result"]


def test_a_users_sandbox_started_on_a_loop_that_still_runs_works_from_another_thread():
    require("bubblewrap")
    from harmony_agent.sandboxes import LocalSandbox
    from harmony_agent.tools import PythonTool

    async def main() -> list[str]:
        async with LocalSandbox(isolation="bubblewrap") as sandbox:  # started on this loop, by the user
            agent = Agent(ScriptedModel([PYTHON_CALL, final("42")]), tools=[PythonTool(sandbox=sandbox)])
            result = await asyncio.to_thread(_run_in_thread, agent)
            await agent.aclose()
            return tool_results(result)

    assert [text.strip() for text in asyncio.run(main())] == ["42"]


@pytest.mark.filterwarnings("ignore:unclosed transport:ResourceWarning")
@pytest.mark.filterwarnings("ignore:Exception ignored in. <function BaseSubprocessTransport.__del__")
def test_a_users_sandbox_from_a_loop_that_has_ended_is_refused_clearly_and_a_tool_started_there_works():
    require("bubblewrap")
    from harmony_agent.sandboxes import LocalSandbox
    from harmony_agent.tools import PythonTool

    async def started_sandbox() -> LocalSandbox:
        return await LocalSandbox(isolation="bubblewrap").start()

    async def started_tool() -> PythonTool:
        tool = PythonTool(sandbox=LocalSandbox(isolation="bubblewrap"))
        await tool.start()
        return tool

    orphan = asyncio.run(started_sandbox())  # its loop closes when asyncio.run returns
    agent = Agent(ScriptedModel([PYTHON_CALL, final("no")]), tools=[PythonTool(sandbox=orphan)])
    refused = _run_in_thread(agent)
    agent.close()
    [message] = tool_results(refused)
    assert "started on an event loop that is no longer running" in message and "unstarted sandbox" in message
    assert "attached to a different loop" not in message
    # The orphan is the user's to end: its process by PID, and its pipes, which Python reports as left
    # on a closed loop when collected (here, where this test expects it, not in a later test).
    orphan._process.kill()
    del orphan, agent, refused
    gc.collect()

    tool = asyncio.run(started_tool())  # the tool's start ran on the runtime, so its loop's end does not matter
    agent = Agent(ScriptedModel([PYTHON_CALL, final("42")]), tools=[tool])
    worked = _run_in_thread(agent)
    agent.close()
    assert [text.strip() for text in tool_results(worked)] == ["42"]


def test_tools_support_with_and_async_with():
    from harmony_agent.tools import BrowserTool, MCPTools, PythonTool
    from harmony_agent.tools.computer import ComputerTool

    for kind in (MCPTools, BrowserTool, PythonTool, ComputerTool):
        for method in ("__enter__", "__exit__", "__aenter__", "__aexit__"):
            assert callable(getattr(kind, method, None)), f"{kind.__name__} lacks {method}"


def test_a_blocking_call_from_inside_the_runtime_is_refused_with_what_to_do_instead():
    from harmony_agent.tools import function_tool

    agent = Agent(ScriptedModel([final("x")]))

    @function_tool
    async def nested() -> str:
        """Runs a blocking turn from inside a tool (on the runtime)."""
        try:
            agent.session().run("go")
        except RuntimeError as exc:
            return str(exc)
        return "ran"

    outer = Agent(ScriptedModel([call("nested", "{}"), final("ok")]), tools=[nested])
    result = outer.run("go")
    outer.close()
    agent.close()
    assert "await the async form" in json.dumps(tool_results(result))
    from harmony_agent.sandboxes.runtime import runtime

    assert runtime().running


def test_a_lockstep_relay_makes_no_item_past_the_one_its_reader_stopped_at():
    """A model's generation is relayed in lockstep: stopping after two tokens leaves no third decode step
    (which would put a token nobody read into the model's cache). Events run ahead, as before."""
    from harmony_agent.sandboxes.runtime import runtime

    def counting():
        made: list[int] = []

        async def produce():
            for n in range(50):
                made.append(n)
                yield n
                await asyncio.sleep(0)

        return made, produce

    async def read_two(lockstep: bool) -> list[int]:
        made, produce = counting()
        stream = runtime().relay(produce, lockstep=lockstep)
        assert [await stream.__anext__(), await stream.__anext__()] == [0, 1]
        await asyncio.sleep(0.2)  # time enough for a producer that runs ahead to run far ahead
        await stream.aclose()
        return made

    assert asyncio.run(read_two(lockstep=True)) == [0, 1]
    assert len(asyncio.run(read_two(lockstep=False))) > 2
