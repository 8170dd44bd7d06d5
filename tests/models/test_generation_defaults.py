"""How many tokens one generation may use by default: by reasoning effort, within the context window.

gpt-oss at ``reasoning="high"`` often thinks for longer than 4096 tokens, the
old flat default, which cut such answers off with a ``max_tokens`` stop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from harmony_agent import Agent
from harmony_agent.agent import MAX_TOKENS_BY_EFFORT
from harmony_agent.cli.options import DEFAULTS, RunOptions, build_agent
from harmony_agent.harmony.encoding import encode_completion
from harmony_agent.models import Model, SamplingParams


class LongThinker(Model):
    """Thinks for ``thinking`` tokens, then answers; records the budget it was given each step."""

    def __init__(self, thinking: int) -> None:
        super().__init__()
        self.thinking = thinking
        self.budgets: list[int | None] = []

    async def generate(
        self, prompt: Sequence[int], *, stop: Sequence[int], sampling: SamplingParams
    ) -> AsyncIterator[int]:
        self.budgets.append(sampling.max_tokens)
        tokens = (
            encode_completion("<|channel|>analysis<|message|>")
            + encode_completion(" hmm") * self.thinking
            + encode_completion("<|end|><|start|>assistant<|channel|>final<|message|>Done.<|return|>")
        )
        for token in tokens[: sampling.max_tokens]:
            yield token


def test_high_reasoning_may_think_past_4096_tokens():
    model = LongThinker(thinking=6000)
    agent = Agent(model, reasoning="high")
    result = agent.run("A hard problem.")
    agent.close()
    assert result.stop_reason == "final", result.error
    assert result.final_text == "Done."
    assert model.budgets == [32768]


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
def test_default_follows_the_reasoning_effort(effort):
    agent = Agent(LongThinker(1), reasoning=effort)
    assert agent.max_tokens == MAX_TOKENS_BY_EFFORT[effort] == agent.turn_settings().max_tokens
    agent.reasoning = "high"  # the budget follows a later change of effort
    assert agent.max_tokens == 32768
    assert Agent(LongThinker(1), max_tokens=100).max_tokens == 100
    assert Agent(LongThinker(1), max_tokens=None).max_tokens is None


def test_the_context_window_bounds_each_generation():
    model = LongThinker(thinking=10)
    agent = Agent(model, reasoning="high", context_window=2000)
    result = agent.run("Short.")
    agent.close()
    assert result.stop_reason == "final"
    (budget,) = model.budgets
    assert budget is not None and budget < 2000


def test_cli_default_is_by_effort_and_a_flag_still_wins():
    assert DEFAULTS.max_tokens is None
    options = RunOptions(model="scripted:examples/weather_demo.yaml", reasoning="high")
    assert build_agent(options).max_tokens == 32768
    options = RunOptions(model="scripted:examples/weather_demo.yaml", reasoning="high", max_tokens=500)
    assert build_agent(options).max_tokens == 500


def test_bad_budgets_are_refused():
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="max_tokens"):
            Agent(LongThinker(1), max_tokens=bad)
