"""A bounded battery: mutated and random completions never crash a run.

Each case is a completion a broken or sampling-at-temperature model could
produce: valid harmony with tokens dropped, duplicated, swapped or replaced
(special tokens included), or plain random ids. Every run must end with a
result and a known stop reason; the session must stay usable afterwards.
"""

from __future__ import annotations

import random

from harmony_agent import Agent
from harmony_agent.harmony.encoding import CALL, CHANNEL, CONSTRAIN, END, MESSAGE, RETURN, START, encode_completion
from harmony_agent.models import Model
from harmony_agent.models.base import GenerationStats
from helpers.completions import call, final

SPECIAL = [START, END, MESSAGE, CHANNEL, CONSTRAIN, RETURN, CALL]
STOP_REASONS = {"final", "max_steps", "max_tokens", "context_window", "model_error"}
CASES = 2000


class Queue(Model):
    """Serves one prepared token list per generation."""

    name = "battery"

    def __init__(self) -> None:
        super().__init__()
        self.next: list[list[int]] = []

    async def generate(self, prompt, *, stop, sampling):
        self.last_stats = GenerationStats(prompt_tokens=len(prompt), prefilled_tokens=len(prompt))
        tokens = self.next.pop(0) if self.next else []
        for token in tokens[: sampling.max_tokens]:
            yield token
            if token in stop:
                return


def mutate(rng: random.Random, tokens: list[int]) -> list[int]:
    tokens = list(tokens)
    for _ in range(rng.randint(1, 4)):
        if not tokens:
            break
        i = rng.randrange(len(tokens))
        op = rng.choice(["drop", "dup", "swap", "special", "random"])
        if op == "drop":
            del tokens[i]
        elif op == "dup":
            tokens.insert(i, tokens[i])
        elif op == "swap" and len(tokens) > 1:
            j = rng.randrange(len(tokens))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == "special":
            tokens[i] = rng.choice(SPECIAL)
        else:
            tokens[i] = rng.randrange(0, 201088)
    return tokens


def test_mutated_and_random_completions_never_crash_a_run(weather_tool):
    rng = random.Random(1234)
    seeds = [
        encode_completion(text)
        for text in (
            call("get_weather", '{"city": "Paris"}'),
            "<|channel|>analysis<|message|>think<|end|><|start|>assistant" + final("answer"),
            "<|channel|>analysis to=python code<|message|>print(1)<|call|>",
            '<|channel|>commentary to=functions.get_weather json<|message|>[{"city": "Rome"}]<|call|>',
            final("plain"),
        )
    ]
    model = Queue()
    agent = Agent(model, tools=[weather_tool], max_steps=3, max_tokens=200)
    outcomes: dict[str, int] = {}
    for case in range(CASES):
        if case % 5 == 4:
            tokens = [rng.randrange(0, 201088) for _ in range(rng.randint(0, 40))]
        else:
            tokens = mutate(rng, rng.choice(seeds))
        model.next = [tokens, tokens, tokens]
        result = agent.run(f"case {case}")
        assert result.stop_reason in STOP_REASONS
        outcomes[result.stop_reason] = outcomes.get(result.stop_reason, 0) + 1
    model.next = [encode_completion(final("still fine"))]
    assert agent.run("after the battery").final_text == "still fine"
    agent.close()
    assert sum(outcomes.values()) == CASES and len(outcomes) >= 2
