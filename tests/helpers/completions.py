"""Scripted completions as gpt-oss writes them, a recording model, a weather tool and a tiny gpt-oss config."""

from __future__ import annotations

from openai_harmony import Role

from harmony_agent import ScriptedModel
from harmony_agent.harmony.encoding import decode
from harmony_agent.tools import function_tool


@function_tool
def get_weather(city: str, unit: str = "celsius") -> dict:
    """Current temperature in a city.

    Args:
        city: The city.
        unit: celsius or fahrenheit.
    """
    if city == "Atlantis":
        raise ValueError("no such city")
    return {"city": city, "temperature": 21, "unit": unit}


def call(name: str, args: str, channel: str = "commentary") -> str:
    """Harmony text of a function call as gpt-oss writes it."""
    return f"<|channel|>{channel} to=functions.{name} <|constrain|>json<|message|>{args}<|call|>"


def final(text: str) -> str:
    return f"<|channel|>final<|message|>{text}<|return|>"


class RecordingModel(ScriptedModel):
    """A ScriptedModel that records every prompt it is given (as token ids, or as text)."""

    def __init__(self, completions, *, as_text: bool = False):
        super().__init__(completions)
        self.as_text = as_text
        self.prompts: list = []

    async def generate(self, prompt, *, stop, sampling):
        self.prompts.append(decode(prompt) if self.as_text else list(prompt))
        async for token in super().generate(prompt, stop=stop, sampling=sampling):
            yield token


def tiny_gpt_oss_config(layers: int = 2, hidden: int = 64, sliding_window: int = 128):
    from transformers import GptOssConfig

    config = GptOssConfig(
        num_hidden_layers=layers,
        hidden_size=hidden,
        intermediate_size=hidden,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        num_local_experts=4,
        num_experts_per_tok=2,
        vocab_size=201088,
        sliding_window=sliding_window,
        layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)],
        max_position_embeddings=8192,
    )
    config._attn_implementation = "eager"
    return config


def weather_policy(messages):
    """Asks for the weather once per question, answers from the tool's output, and counts the user's turns."""
    last = messages[-1]
    text = last.content[0].text if last.content else ""
    if last.author.role == Role.TOOL:
        return "<|channel|>analysis<|message|>Got it.<|end|><|start|>assistant" + final(f"Weather: {text}.")
    users = [m for m in messages if m.author.role == Role.USER]
    if "weather" in text.lower():
        return "<|channel|>analysis<|message|>I need the tool.<|end|><|start|>assistant" + call(
            "get_weather", '{"city": "Oslo"}'
        )
    return final(f"This is your turn {len(users)}; before you said: {users[0].content[0].text}")
