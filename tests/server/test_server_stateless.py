"""Stateless Responses clients against ``serve``: the whole conversation comes back as input items each time.

The real clients at their default settings (openai-agents' Runner, LangChain's
ChatOpenAI on the Responses API, a Codex-style ``store=false`` stream), over
HTTP on 127.0.0.1, with a scripted gpt-oss behind the server.
"""

from __future__ import annotations

import asyncio
import json

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")


from harmony_agent import PolicyModel, ScriptedModel
from harmony_agent.server import ServerConfig
from helpers.completions import RecordingModel, call, final, weather_policy
from helpers.serving import client, running, two_weather_turns, weather_agent

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_openai_agents_runner_tool_round_trip_and_a_second_turn():
    agents = pytest.importorskip("agents")

    model = PolicyModel(weather_policy)
    with running(ServerConfig(model)) as url:

        async def main():
            agent, config = weather_agent(url, "responses")
            await two_weather_turns(agent, config)
            streamed = agents.Runner.run_streamed(agent, "weather in Oslo, streamed?", run_config=config)
            deltas = [e async for e in streamed.stream_events()]
            assert streamed.final_output == "Weather: 3 degrees in Oslo."
            assert any(e.type == "raw_response_event" for e in deltas)
            follow = streamed.to_input_list() + [{"role": "user", "content": "Thanks"}]
            again = agents.Runner.run_streamed(agent, follow, run_config=config)
            [_ async for _ in again.stream_events()]
            assert again.final_output == "This is your turn 2; before you said: weather in Oslo, streamed?"

        asyncio.run(main())


def test_langchain_responses_api_with_a_tool():
    pytest.importorskip("langchain_openai")
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    with running(ServerConfig(PolicyModel(weather_policy))) as url:
        llm = ChatOpenAI(model="gpt-oss", base_url=url, api_key="unused", use_responses_api=True, max_retries=0)
        bound = llm.bind_tools([WEATHER])
        messages = [HumanMessage("What is the weather in Oslo?")]
        reply = bound.invoke(messages)
        [tool_call] = reply.tool_calls
        assert tool_call["name"] == "get_weather" and tool_call["args"] == {"city": "Oslo"}
        messages += [reply, ToolMessage("3 degrees", tool_call_id=tool_call["id"])]
        answer = bound.invoke(messages)
        assert answer.text == "Weather: 3 degrees."
        messages += [answer, HumanMessage("What did I ask?")]
        assert bound.invoke(messages).text == "This is your turn 2; before you said: What is the weather in Oslo?"


def test_codex_style_stateless_stream_continues_the_held_session():
    """store=false, stream=true, the whole conversation each time, reasoning sent back as encrypted content only."""
    import httpx

    model = RecordingModel(
        [
            "<|channel|>analysis<|message|>Call it.<|end|><|start|>assistant" + call("shell", '{"command": ["ls"]}'),
            final("Two files."),
            final("You asked about files."),
        ],
        as_text=True,
    )
    shell = {"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}}
    with running(ServerConfig(model)) as url:

        def turn(items):
            body = {
                "model": "gpt-oss",
                "instructions": "You are a coding agent.",
                "input": items,
                "tools": [shell],
                "tool_choice": "auto",
                "parallel_tool_calls": False,
                "reasoning": {"effort": "low", "summary": "auto"},
                "store": False,
                "stream": True,
                "include": ["reasoning.encrypted_content"],
                "prompt_cache_key": "thread-1",
            }
            with httpx.Client(timeout=60) as http, http.stream("POST", f"{url}/responses", json=body) as reply:
                assert reply.status_code == 200
                events = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: ")]
            assert events[-1]["type"] == "response.completed"
            return [e["item"] for e in events if e["type"] == "response.output_item.done"]

        user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List the files"}]}
        out = turn([user])
        [fc] = [item for item in out if item["type"] == "function_call"]
        for item in out:  # what Codex keeps: reasoning as encrypted content and an empty summary
            if item["type"] == "reasoning":
                item.pop("content", None)
                item.update(summary=[], encrypted_content="opaque")
        items = [user, *out, {"type": "function_call_output", "call_id": fc["call_id"], "output": "a.py b.py"}]
        out2 = turn(items)
        assert out2[-1]["content"][0]["text"] == "Two files."
        items += [*out2, {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What?"}]}]
        out3 = turn(items)
        assert out3[-1]["content"][0]["text"] == "You asked about files."
    # Each request continued the conversation the server held: every prompt extends the one before, token for token.
    assert model.prompts[1].startswith(model.prompts[0]) and "a.py b.py" in model.prompts[1]
    assert model.prompts[2].startswith(model.prompts[0].split("<|start|>assistant<|channel|>analysis")[0])
    assert "<|start|>user<|message|>What?<|end|>" in model.prompts[2]


def py(code: str) -> str:
    return f"<|channel|>analysis to=python code<|message|>{code}<|call|>"


def test_stateless_python_state_is_kept_when_the_history_matches_and_lost_when_it_does_not():
    from harmony_agent.tools import PythonTool
    from helpers.available import require

    require("bubblewrap")
    model = ScriptedModel([py("x = 41"), final("Set."), py("print(x + 1)"), final("42"), py("print(x)"), final("?")])
    config = ServerConfig(model, builtin_tools={"python": PythonTool(sandbox="bubblewrap")})
    tools = [{"type": "code_interpreter", "container": {"type": "auto"}}]
    with running(config) as url:
        c = client(url)
        first = c.responses.create(model="gpt-oss", input="Set x", tools=tools, store=False)
        history = [{"role": "user", "content": "Set x"}] + [item.model_dump() for item in first.output]
        second = c.responses.create(
            model="gpt-oss", input=[*history, {"role": "user", "content": "x + 1?"}], tools=tools, store=False
        )
        [ci] = [item for item in second.output if item.type == "code_interpreter_call"]
        assert ci.outputs[0].logs == "42"  # the same kernel: x is still there
        edited = [{"role": "user", "content": "Set x, please"}] + history[1:]  # not what the server holds
        third = c.responses.create(
            model="gpt-oss", input=[*edited, {"role": "user", "content": "x?"}], tools=tools, store=False
        )
        [ci] = [item for item in third.output if item.type == "code_interpreter_call"]
        assert "NameError" in ci.outputs[0].logs  # rebuilt in a new session: the words, not the variables


def test_a_rebuilt_conversation_renders_every_item_kind():
    """Items the server never saw: assistant messages with extra fields, reasoning, calls, outputs, server tools."""
    model = RecordingModel([final("Done.")], as_text=True)
    with running(ServerConfig(model)) as url:
        items = [
            {"type": "message", "role": "developer", "content": "Be terse."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "Ask."}]},
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "c1",
                "name": "get_weather",
                "arguments": '{"city":"Oslo"}',
                "status": "completed",
            },
            {"type": "function_call_output", "call_id": "c1", "output": "3C"},
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "phase": "final_answer",
                "content": [{"type": "output_text", "text": "It is 3C.", "annotations": [], "logprobs": []}],
            },
            {"role": "user", "content": "And now?"},  # a turn without a final answer keeps its analysis
            {
                "type": "code_interpreter_call",
                "id": "ci_1",
                "code": "print(1)",
                "outputs": [{"type": "logs", "logs": "1"}],
                "status": "completed",
                "container_id": "x",
            },
            {
                "type": "web_search_call",
                "id": "ws_1",
                "status": "completed",
                "action": {"type": "search", "query": "q"},
            },
            {
                "type": "tool_call",
                "id": "tc_1",
                "name": "functions.observe",
                "arguments": "{}",
                "output": "Screen 1280x800.",
                "status": "completed",
            },
            {"role": "user", "content": "Go on"},
        ]
        reply = client(url).responses.create(model="gpt-oss", input=items, tools=[WEATHER])
        assert reply.output_text == "Done."
    prompt = model.prompts[0]
    assert "# Instructions\n\nBe terse." in prompt
    assert "<|start|>user<|message|>Weather?<|end|>" in prompt
    assert "Ask." not in prompt  # the finished turn's analysis is dropped at the next user message, as harmony does
    assert (
        '<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{"city":"Oslo"}<|call|>'
        in prompt
    )
    assert "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>3C<|end|>" in prompt
    assert "<|start|>assistant<|channel|>final<|message|>It is 3C.<|end|>" in prompt
    assert "<|start|>assistant to=python<|channel|>analysis<|message|>print(1)<|call|>" in prompt
    assert "<|start|>python to=assistant<|channel|>analysis<|message|>1<|end|>" in prompt
    assert '<|start|>assistant to=browser.search<|channel|>analysis<|message|>{"query": "q"}<|call|>' in prompt
    assert "<|start|>functions.observe to=assistant<|channel|>commentary<|message|>Screen 1280x800.<|end|>" in prompt
    assert prompt.endswith("Screen 1280x800.<|end|><|start|>user<|message|>Go on<|end|><|start|>assistant")


def test_stateless_input_errors_are_clear():
    with running(ServerConfig(ScriptedModel([final("x")]))) as url:
        c = client(url)
        with pytest.raises(openai.BadRequestError, match="need their outputs"):
            c.responses.create(
                model="gpt-oss",
                input=[
                    {"role": "user", "content": "hi"},
                    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                    {"role": "user", "content": "and?"},
                ],
            )
        with pytest.raises(openai.BadRequestError, match="ends with the assistant"):
            c.responses.create(
                model="gpt-oss", input=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
            )
        with pytest.raises(openai.BadRequestError, match="item_reference"):
            c.responses.create(model="gpt-oss", input=[{"type": "item_reference", "id": "x"}])


def test_conversations_left_idle_are_closed():
    """A stateless client never says it is done: its conversation (and sandbox) goes after idle_seconds."""
    import time

    from harmony_agent.server import create_app

    app = create_app(ServerConfig(ScriptedModel([final("one"), final("two"), final("three")]), idle_seconds=1.0))
    store = app.state.store
    with running(app) as url:
        c = client(url)
        c.responses.create(model="gpt-oss", input="first", store=False)
        c.responses.create(model="gpt-oss", input="second", store=False)
        held = list(store._live.values())
        assert len(held) == 2 and not any(conversation.session.closed for conversation in held)
        time.sleep(1.5)
        c.responses.create(model="gpt-oss", input="third", store=False)  # a request sweeps out the idle ones
        assert all(conversation.session.closed for conversation in held)
        assert store.held == 1
