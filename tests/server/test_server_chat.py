"""``POST /v1/chat/completions``, driven by the real clients over HTTP on 127.0.0.1, with a scripted gpt-oss."""

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
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_sdk_chat_completions_tool_round_trip_and_second_turn():
    model = RecordingModel(
        [
            "<|channel|>analysis<|message|>Use the tool.<|end|><|start|>assistant"
            + call("get_weather", '{"city": "Oslo"}'),
            "<|channel|>analysis<|message|>Answer.<|end|><|start|>assistant" + final("3 degrees in Oslo."),
            final("You asked about Oslo."),
        ],
        as_text=True,
    )
    with running(ServerConfig(model)) as url:
        c = client(url)
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Oslo?"}]
        first = c.chat.completions.create(model="gpt-oss", messages=messages, tools=[WEATHER])
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        [tc] = choice.message.tool_calls
        assert tc.function.name == "get_weather" and json.loads(tc.function.arguments) == {"city": "Oslo"}
        assert choice.message.model_extra["reasoning_content"] == "Use the tool."
        messages += [
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": tc.id, "content": "3C"},
        ]
        second = c.chat.completions.create(model="gpt-oss", messages=messages, tools=[WEATHER])
        assert second.choices[0].finish_reason == "stop"
        assert second.choices[0].message.content == "3 degrees in Oslo."
        assert second.usage.prompt_tokens > 0 and second.usage.completion_tokens > 0
        messages += [second.choices[0].message.model_dump(exclude_none=True), {"role": "user", "content": "What?"}]
        third = c.chat.completions.create(model="gpt-oss", messages=messages, tools=[WEATHER])
        assert third.choices[0].message.content == "You asked about Oslo."
    assert "# Instructions\n\nBe brief." in model.prompts[0]
    # The held conversation was continued each time: the prompts extend each other token for token.
    assert model.prompts[1].startswith(model.prompts[0])
    assert "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>3C<|end|>" in model.prompts[1]
    assert model.prompts[2].endswith("<|start|>user<|message|>What?<|end|><|start|>assistant")


def test_sdk_chat_completions_streamed_with_usage_and_done():
    import httpx

    model = ScriptedModel(
        [
            "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant" + call("get_weather", '{"city": "Rome"}'),
            final("Sunny in Rome."),
        ]
    )
    with running(ServerConfig(model)) as url:
        c = client(url)
        messages = [{"role": "user", "content": "Weather in Rome?"}]
        chunks = list(
            c.chat.completions.create(
                model="gpt-oss",
                messages=messages,
                tools=[WEATHER],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert all(ch.object == "chat.completion.chunk" for ch in chunks)
        reasoning = "".join(
            ch.choices[0].delta.model_extra.get("reasoning_content") or "" for ch in chunks if ch.choices
        )
        assert reasoning == "Think."
        calls = [tc for ch in chunks if ch.choices for tc in ch.choices[0].delta.tool_calls or []]
        assert calls[0].id and calls[0].function.name == "get_weather"
        assert "".join(tc.function.arguments or "" for tc in calls) == '{"city": "Rome"}'
        finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
        assert finishes == ["tool_calls"]
        assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
        messages += [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": calls[0].id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
        ]
        with httpx.Client(timeout=30) as http:
            body = {"model": "gpt-oss", "messages": messages, "tools": [WEATHER], "stream": True}
            with http.stream("POST", f"{url}/chat/completions", json=body) as reply:
                lines = [line for line in reply.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or "" for line in lines[:-1])
        assert text == "Sunny in Rome."
        assert json.loads(lines[-2][6:])["choices"][0]["finish_reason"] == "stop"


def test_finish_reason_length_and_reasoning_effort():
    model = RecordingModel([final("word " * 50)], as_text=True)
    with running(ServerConfig(model)) as url:
        reply = client(url).chat.completions.create(
            model="gpt-oss",
            messages=[{"role": "user", "content": "Talk"}],
            max_completion_tokens=5,
            reasoning_effort="high",
        )
    assert reply.choices[0].finish_reason == "length"
    assert "Reasoning: high" in model.prompts[0]


def test_langchain_default_chat_openai_with_tools():
    pytest.importorskip("langchain_openai")
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    with running(ServerConfig(PolicyModel(weather_policy))) as url:
        llm = ChatOpenAI(model="gpt-oss", base_url=url, api_key="unused", max_retries=0)
        bound = llm.bind_tools([WEATHER])
        messages = [HumanMessage("What is the weather in Oslo?")]
        reply = bound.invoke(messages)
        [tool_call] = reply.tool_calls
        assert tool_call["name"] == "get_weather" and tool_call["args"] == {"city": "Oslo"}
        messages += [reply, ToolMessage("3 degrees", tool_call_id=tool_call["id"])]
        answer = bound.invoke(messages)
        assert answer.content == "Weather: 3 degrees."
        messages += [answer, HumanMessage("What did I ask?")]
        assert bound.invoke(messages).content == "This is your turn 2; before you said: What is the weather in Oslo?"
        streamed = "".join(chunk.content for chunk in bound.stream([HumanMessage("Hello")]))
        assert streamed == "This is your turn 1; before you said: Hello"


def test_openai_agents_chat_completions_model():
    pytest.importorskip("agents")

    with running(ServerConfig(PolicyModel(weather_policy))) as url:

        async def main():
            agent, config = weather_agent(url, "chat")
            await two_weather_turns(agent, config)

        asyncio.run(main())


def py(code: str) -> str:
    return f"<|channel|>analysis to=python code<|message|>{code}<|call|>"


def test_builtin_python_runs_server_side_and_only_the_answer_comes_back():
    from harmony_agent.tools import PythonTool
    from helpers.available import require

    require("bubblewrap")
    model = ScriptedModel([py("print(6 * 7)"), final("42")])
    config = ServerConfig(model, builtin_tools={"python": PythonTool(sandbox="bubblewrap")})
    with running(config) as url:
        reply = client(url).chat.completions.create(model="gpt-oss", messages=[{"role": "user", "content": "6*7?"}])
    assert reply.choices[0].message.content == "42" and reply.choices[0].finish_reason == "stop"
    assert not reply.choices[0].message.tool_calls


def test_chat_errors_are_clear():
    with running(ServerConfig(ScriptedModel([final("x")]))) as url:
        c = client(url)
        with pytest.raises(openai.BadRequestError, match="role"):
            c.chat.completions.create(model="gpt-oss", messages=[{"role": "wizard", "content": "hi"}])
        with pytest.raises(openai.BadRequestError, match="messages"):
            c.chat.completions.create(model="gpt-oss", messages=[])
        with pytest.raises(openai.BadRequestError, match="nope"):
            c.chat.completions.create(
                model="gpt-oss",
                messages=[{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "nope", "content": "1"}],
            )
