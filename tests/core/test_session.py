"""An agent across many turns: one session's tools keep their state whichever way turns are started.

These run the real python tool (bubblewrap and Docker sandboxes), because the
defect they guard against (a kernel bound to an event loop that the next
``run()`` no longer has) only shows with a real subprocess and reader task.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading

import pytest

from harmony_agent import Agent, ScriptedModel, SessionBusyError, SessionClosedError
from harmony_agent.tools import PythonTool, Tool, ToolResult
from helpers import ROOT
from helpers.available import KINDS, require
from helpers.completions import final


def py(code: str) -> str:
    return f"<|channel|>analysis to=python code<|message|>{code}<|call|>"


def outputs(result) -> list[str]:
    return [e.content for e in result.events if e.type == "tool_result"]


@pytest.fixture(params=KINDS)
def kind(request):
    require(request.param)
    return request.param


def test_readme_multi_turn_pattern_keeps_python_state(kind):
    """result = agent.run(...); agent.run(..., previous=result): the second turn sees the first's variables."""
    model = ScriptedModel([py("x = 41"), final("stored"), py("print(x + 1)"), final("42")])
    agent = Agent(model, tools=[PythonTool(sandbox=kind)])
    try:
        result = agent.run("Store 41 in x.")
        follow_up = agent.run("Print x + 1.", previous=result)
        assert follow_up.ok, follow_up.error
        assert outputs(follow_up) == ["42"]
        assert follow_up.session_number == result.session_number is not None
    finally:
        agent.close()


def test_run_and_arun_mix_freely_on_one_session(kind):
    model = ScriptedModel([py("x = 1"), final("a"), py("x += 1"), final("b"), py("print(x * 10)"), final("c")])
    agent = Agent(model, tools=[PythonTool(sandbox=kind)])
    try:
        first = agent.run("one")
        second = asyncio.run(agent.arun("two", previous=first))  # a different event loop from the caller's side

        async def third_in_a_notebook_loop():
            return agent.run("three", previous=second)  # run() inside a running loop, as a Jupyter cell does

        third = asyncio.run(third_in_a_notebook_loop())
        assert [r.ok for r in (first, second, third)] == [True, True, True]
        assert outputs(third) == ["20"]
    finally:
        agent.close()


def test_sessions_do_not_share_kernels():
    require("bubblewrap")
    model = ScriptedModel([py("secret = 7"), final("set"), py("print(secret)"), final("?")])
    agent = Agent(model, tools=[PythonTool(sandbox="bubblewrap")])
    with agent.session() as one, agent.session() as two:
        assert one.tools[0] is not two.tools[0] and one.tools[0] is not agent.tools[0]
        one.run("set it")
        other = two.run("read it")
        assert "NameError" in outputs(other)[0]
    agent.close()


class Gate(Tool):
    """A function tool that waits until the test opens the gate: holds a turn in progress."""

    namespace = "functions"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.closed = 0

    def descriptions(self):
        from openai_harmony import ToolDescription

        return [ToolDescription.new("gate", "Wait.", parameters=None)]

    async def _process(self, call):
        self.entered.set()
        await asyncio.to_thread(self.release.wait, 10)
        return ToolResult(output="open")

    async def aclose(self):
        self.closed += 1


GATE = "<|channel|>commentary to=functions.gate <|constrain|>json<|message|>{}<|call|>"


def test_a_second_turn_on_a_busy_session_is_refused_clearly():
    gate = Gate()
    agent = Agent(ScriptedModel([GATE, final("done")]), tools=[gate])
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("first", agent.run("go")))
    worker.start()
    assert gate.entered.wait(10)
    with pytest.raises(SessionBusyError, match=r"agent\.session"):
        agent.run("again")
    with pytest.raises(SessionBusyError):
        asyncio.run(agent.arun("again"))
    gate.release.set()
    worker.join(10)
    assert outcome["first"].final_text == "done"
    agent.close()


def test_closing_releases_every_resource_once():
    gate = Gate()
    gate.release.set()
    agent = Agent(ScriptedModel([GATE, final("done")]), tools=[gate])
    session = agent.default_session
    assert agent.run("go").ok
    agent.close()
    agent.close()
    assert gate.closed == 1
    with pytest.raises(SessionClosedError):
        session.run("more")


async def test_async_with_closes_and_a_new_default_session_follows():
    gate = Gate()
    gate.release.set()
    async with Agent(ScriptedModel([GATE, final("a")]), tools=[gate]) as agent:
        assert (await agent.arun("go")).final_text == "a"
    assert gate.closed == 1


def test_interpreter_exit_closes_open_sessions(tmp_path):
    """A script that never closes its agent: the sandbox is still released at exit, once."""
    require("bubblewrap")
    marker = tmp_path / "closed.txt"
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
        from harmony_agent import Agent, ScriptedModel
        from harmony_agent.tools import PythonTool

        class Counted(PythonTool):
            async def aclose(self):
                with open({str(marker)!r}, "a") as f:
                    f.write("closed\\n")
                await super().aclose()

        tool = Counted(sandbox="bubblewrap")
        model = ScriptedModel(["<|channel|>analysis to=python code<|message|>import os; print(os.getpid())<|call|>",
                               "<|channel|>final<|message|>ok<|return|>"])
        result = Agent(model, tools=[tool]).run("go")
        assert result.ok, result.error
    """)
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "closed\n"


class ClientSide(Tool):
    """A function the caller answers (as a Responses API client answers its own functions)."""

    namespace = "functions"
    answered_by_caller = True

    def descriptions(self):
        from openai_harmony import ToolDescription

        return [
            ToolDescription.new(
                "lookup", "Look up.", parameters={"type": "object", "properties": {"q": {"type": "string"}}}
            )
        ]

    async def _process(self, call):
        raise AssertionError("a caller-answered tool is never run by the loop")


def test_a_turn_pauses_on_a_call_the_caller_answers_and_goes_on_with_its_output():
    from helpers.completions import RecordingModel

    model = RecordingModel(
        ['<|channel|>commentary to=functions.lookup <|constrain|>json<|message|>{"q": "x"}<|call|>', final("found it")],
        as_text=True,
    )
    agent = Agent(model, tools=[ClientSide()])
    paused = agent.run("look x up")
    assert paused.stop_reason == "tool_call" and not paused.ok
    [pending] = paused.pending_calls
    assert pending.recipient == "functions.lookup" and pending.arguments == '{"q": "x"}'
    with pytest.raises(ValueError, match="waiting for tool outputs"):
        agent.run("ignore it", previous=paused)
    with pytest.raises(ValueError, match="unknown"):
        agent.run(None, previous=paused, tool_outputs={"nope": "1"})
    done = agent.run(None, previous=paused, tool_outputs={pending.call_id: "X is 42"})
    assert done.final_text == "found it"
    assert model.prompts[1].endswith(
        "<|start|>functions.lookup to=assistant<|channel|>commentary<|message|>X is 42<|end|><|start|>assistant"
    )
    agent.close()


@pytest.mark.slow  # starts Xvfb
def test_each_session_gets_a_display_of_its_own():
    from harmony_agent.sandboxes import VirtualDisplay
    from harmony_agent.tools import ComputerTool

    tool = ComputerTool(VirtualDisplay(800, 600, sandbox="bubblewrap"), apps={"xterm": ["xterm"]})
    agent = Agent(ScriptedModel([]), tools=[tool])
    with agent.session() as one, agent.session() as two:
        displays = [s.tools[0].display for s in (one, two)]
        assert displays[0] is not displays[1] and tool.display not in displays
        assert all((d.width, d.height, d.sandbox) == (800, 600, "bubblewrap") for d in displays)
        assert one.tools[0].apps == {"xterm": ["xterm"]}
    with pytest.raises(Exception, match="attached by name"):
        ComputerTool(VirtualDisplay(display=":99")).fresh()
    agent.close()


@pytest.mark.slow  # starts Chromium
def test_each_session_gets_a_browser_cursor_stack_of_its_own():
    from harmony_agent.tools.browser import BrowserTool, NavigationPolicy

    policy = NavigationPolicy(allow_domains=["127.0.0.1"], allow_addresses=["127.0.0.1"])
    tool = BrowserTool(policy=policy, view_tokens=512, actions=False)
    copy = tool.fresh()
    assert copy is not tool and copy.stack is not tool.stack and copy.session is None
    assert (copy.policy, copy.view_tokens, copy.actions) == (policy, 512, False)
    assert copy.recipients() == tool.recipients()


def test_the_result_is_there_when_a_listener_stops_at_run_end():
    agent = Agent(ScriptedModel([final("ok")]))

    async def listen():
        async for event in agent.stream("x"):
            if event.type == "run_end":
                return  # as the command line does

    asyncio.run(listen())
    assert agent.last_result is not None and agent.last_result.final_text == "ok"
    assert agent.last_result.events[-1].type == "run_end"
    agent.close()


def test_leaving_a_stream_early_waits_for_the_turn_to_end_cleanly(caplog):
    """A listener that stops reading cancels the turn and waits for it; nothing is left to hit its closed loop."""
    import logging

    gate = Gate()
    agent = Agent(ScriptedModel([GATE, final("never")]), tools=[gate])

    async def first_event_only():
        async for event in agent.stream("go"):
            return event.type

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(first_event_only()) == "run_start"
        gate.release.set()
        again = agent.run("again")  # the cancelled turn released the session: no SessionBusyError
        assert again.stop_reason in ("final", "tool_call", "model_error")
    assert not [
        r for r in caplog.records if "Event loop is closed" in r.getMessage() or "never retrieved" in r.getMessage()
    ]
    agent.close()


def test_a_result_is_data_that_names_its_session_by_number():
    """A result holds no live session: it pickles, and previous= finds the session by number."""
    import pickle

    model = ScriptedModel([final("one"), final("two"), final("three")])
    with Agent(model) as agent, agent.session() as own:
        first = own.run("first")
        copied = pickle.loads(pickle.dumps(first))
        assert copied.final_text == "one" and copied.session_number == own.number
        second = agent.run("second", previous=copied)  # continues in `own`, not in the default session
        assert second.session_number == own.number
        assert agent.last_result is None  # the default session never ran
