"""Conversation building equals harmony's own renders; history stays token-exact."""

from openai_harmony import (
    Conversation,
    DeveloperContent,
    Message,
    ReasoningEffort,
    Role,
    SystemContent,
    ToolNamespaceConfig,
)

from harmony_agent import Agent
from harmony_agent.harmony.encoding import assistant_prefix, decode, developer_message, get_encoding, system_message
from helpers.completions import RecordingModel, call, final


def test_system_message_matches_harmony_golden_render():
    enc = get_encoding()
    ours = system_message(
        reasoning="high", date="2026-11-27", builtin_tools=[ToolNamespaceConfig.browser(), ToolNamespaceConfig.python()]
    )
    golden = Message.from_role_and_content(
        Role.SYSTEM,
        SystemContent.new()
        .with_reasoning_effort(ReasoningEffort.HIGH)
        .with_conversation_start_date("2026-11-27")
        .with_browser_tool()
        .with_python_tool(),
    )
    assert enc.render(ours) == enc.render(golden)
    text = decode(enc.render(ours))
    assert "Reasoning: high" in text and "Current date: 2026-11-27" in text
    assert "namespace browser" in text and "## python" in text


def test_developer_message_carries_instructions_and_function_tools(weather_tool):
    enc = get_encoding()
    ours = developer_message("Be brief.", weather_tool.descriptions())
    golden = Message.from_role_and_content(
        Role.DEVELOPER,
        DeveloperContent.new().with_instructions("Be brief.").with_function_tools(weather_tool.descriptions()),
    )
    assert enc.render(ours) == enc.render(golden)
    text = decode(enc.render(ours))
    assert "namespace functions" in text and "type get_weather = (_: {" in text
    assert "// The city." in text
    assert developer_message(None, []) is None


def test_first_prompt_equals_render_for_completion(weather_tool):
    model = RecordingModel([final("hi")])
    agent = Agent(model, tools=[weather_tool], instructions="Be brief.", date="2026-11-27")
    agent.run("Hello")
    expected = get_encoding().render_conversation_for_completion(
        Conversation.from_messages(agent.preamble() + [Message.from_role_and_content(Role.USER, "Hello")]),
        Role.ASSISTANT,
    )
    assert model.prompts[0] == list(expected)
    assert decode(model.prompts[0]).endswith("<|start|>user<|message|>Hello<|end|><|start|>assistant")


def test_history_extends_prompt_token_for_token_and_keeps_model_tokens(weather_tool):
    # The model writes the recipient after the channel; harmony would re-render it before.
    first = "<|channel|>analysis<|message|>Look it up.<|end|><|start|>assistant" + call(
        "get_weather", '{"city":"Paris"}'
    )
    model = RecordingModel([first, final("21 degrees")])
    result = Agent(model, tools=[weather_tool]).run("Weather?")
    assert result.final_text == "21 degrees"
    one, two = model.prompts
    assert two[: len(one)] == one
    tail = decode(two[len(one) - len(assistant_prefix()) :])
    assert "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>" in tail
    assert '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{"city": "Paris"' in tail
    assert tail.endswith("<|start|>assistant")


def test_new_turn_drops_analysis_of_finished_turns():
    model = RecordingModel(
        [
            "<|channel|>analysis<|message|>SECRET-THOUGHT<|end|><|start|>assistant" + final("one"),
            "<|channel|>analysis<|message|>SECOND-THOUGHT<|end|><|start|>assistant" + final("two"),
        ],
        as_text=True,
    )
    agent = Agent(model)
    first = agent.run("first")
    second = agent.run("second", previous=first)
    assert second.final_text == "two"
    assert "SECRET-THOUGHT" not in model.prompts[1]
    assert "<|channel|>final<|message|>one<|end|>" in model.prompts[1]  # the answer stays, stored with <|end|>
    assert "<|start|>user<|message|>second<|end|>" in model.prompts[1]
    assert [m.channel for m in second.messages if m.author.role == Role.ASSISTANT] == ["final", "analysis", "final"]


def test_analysis_is_kept_while_a_tool_chain_is_in_progress(weather_tool):
    first = "<|channel|>analysis<|message|>CHAIN-THOUGHT<|end|><|start|>assistant" + call(
        "get_weather", '{"city":"Oslo"}'
    )
    model = RecordingModel([first, final("ok")], as_text=True)
    Agent(model, tools=[weather_tool]).run("x")
    assert "CHAIN-THOUGHT" in model.prompts[1]


def test_new_turn_drops_every_analysis_channel_message_whoever_wrote_it(weather_tool):
    """A tool called on the analysis channel answers on it: at the next user turn both go, as harmony drops by channel."""
    on_analysis = '<|channel|>analysis to=functions.get_weather <|constrain|>json<|message|>{"city":"Oslo"}<|call|>'
    model = RecordingModel([on_analysis, final("mild"), final("bye")], as_text=True)
    agent = Agent(model, tools=[weather_tool], date="2026-11-28")
    first = agent.run("weather?")
    assert (
        "<|start|>functions.get_weather to=assistant<|channel|>analysis<|message|>" in model.prompts[1]
    )  # kept mid-chain
    agent.run("thanks", previous=first)
    third = model.prompts[2]
    assert "get_weather to=assistant" not in third and "to=functions.get_weather" not in third
    # Byte for byte: the prompt is the preamble, the first user turn, its final answer and the new user turn.
    preamble = get_encoding().decode(get_encoding().render_conversation(Conversation.from_messages(agent.preamble())))
    assert third == (
        preamble + "<|start|>user<|message|>weather?<|end|>"
        "<|start|>assistant<|channel|>final<|message|>mild<|end|>"
        "<|start|>user<|message|>thanks<|end|><|start|>assistant"
    )


def test_final_answer_is_stored_with_end_and_calls_keep_call_and_model_header_order(weather_tool):
    model = RecordingModel([call("get_weather", '{"city":"Rome"}'), final("warm")], as_text=True)
    result = Agent(model, tools=[weather_tool]).run("x")
    # the model's own header order (channel before recipient) and <|call|> stay in history
    assert (
        '<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Rome"}<|call|>'
        in model.prompts[1]
    )
    tokens = result._history.tokens
    assert decode(tokens).endswith("<|channel|>final<|message|>warm<|end|>")
