"""Loop overhead per step (render, parse, route; no model or tool time) as history grows.

Compares harmony-agent's token-exact history (append the model's tokens and the
rendered tool message) with re-rendering the whole conversation every step and
re-parsing the completion with harmony's one-shot parser, as the gpt-oss
reference chat loop does. Both run in this process, side by side.

    .venv/bin/python benchmarks/loop_overhead.py [--quick]

``--quick`` runs one round to 50 messages (seconds), so CI can check the script still runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from openai_harmony import Author, Conversation, Message, Role

from harmony_agent import Agent
from harmony_agent.harmony.encoding import encode_completion, get_encoding
from harmony_agent.models.base import GenerationStats, Model
from harmony_agent.tools import function_tool

CHECKPOINTS = (10, 50, 200)  # conversation sizes in messages
COMPLETION = (
    "<|channel|>analysis<|message|>Look up the next value.<|end|><|start|>assistant"
    '<|channel|>commentary to=functions.lookup <|constrain|>json<|message|>{"key": "alpha"}<|call|>'
)


@function_tool
async def lookup(key: str) -> str:
    """Return a stored value."""
    return f"value of {key}: 42"


class InstantModel(Model):
    """Yields a pre-encoded completion at once and timestamps each step."""

    name = "instant"

    def __init__(self, tokens: list[int]) -> None:
        super().__init__()
        self.tokens = tokens
        self.stamps: list[tuple[float, int]] = []

    async def generate(self, prompt, *, stop, sampling):
        self.stamps.append((time.perf_counter(), len(prompt)))
        self.last_stats = GenerationStats(prompt_tokens=len(prompt), prefilled_tokens=len(prompt))
        for token in self.tokens:
            yield token


def ours(steps: int) -> dict[int, float]:
    """Per-step time of the real Agent loop, by number of messages in the conversation."""
    model = InstantModel(encode_completion(COMPLETION))
    agent = Agent(model, tools=[lookup], max_steps=steps, max_tokens=None)
    asyncio.run(agent.arun("Look up values until told to stop."))
    per_step: dict[int, float] = {}
    for i in range(1, len(model.stamps)):
        messages = 3 + 3 * i  # system, developer, user + (analysis, call, result) per step
        per_step[messages] = model.stamps[i][0] - model.stamps[i - 1][0]
    return per_step


def reference_step(messages: list[Message], completion: list[int]) -> None:
    encoding = get_encoding()
    encoding.render_conversation_for_completion(Conversation.from_messages(messages), Role.ASSISTANT)
    parsed = encoding.parse_messages_from_completion_tokens(completion, Role.ASSISTANT)
    call = parsed[-1]
    result = Message.from_author_and_content(Author.new(Role.TOOL, call.recipient), "value of alpha: 42")
    result = result.with_recipient("assistant").with_channel("commentary")
    messages.extend(parsed + [result])


def reference(max_messages: int) -> dict[int, float]:
    agent = Agent(InstantModel([]), tools=[lookup])
    messages = agent.preamble() + [Message.from_role_and_content(Role.USER, "Look up values until told to stop.")]
    completion = encode_completion(COMPLETION)
    per_step: dict[int, float] = {}
    while len(messages) < max_messages + 3:
        started = time.perf_counter()
        reference_step(messages, completion)
        per_step[len(messages)] = time.perf_counter() - started
    return per_step


def around(per_step: dict[int, float], size: int, window: int = 3) -> float:
    """Median step time for conversations within a few steps of ``size`` messages."""
    near = [t for n, t in per_step.items() if abs(n - size) <= 3 * window]
    return statistics.median(near)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, up to 50 messages: checks it still runs")
    args = parser.parse_args()
    checkpoints = (10, 50) if args.quick else CHECKPOINTS
    rounds = 1 if args.quick else 5
    steps = max(checkpoints) // 3 + 6
    ours_times = [ours(steps) for _ in range(rounds)]
    ref_times = [reference(max(checkpoints) + 12) for _ in range(rounds)]
    print(f"{'messages':>9} {'ours ms/step':>13} {'re-render ms/step':>18} {'ratio':>7}")
    results = {}
    for size in checkpoints:
        mine = statistics.median(around(t, size) for t in ours_times) * 1000
        ref = statistics.median(around(t, size) for t in ref_times) * 1000
        results[size] = (mine, ref)
        print(f"{size:>9} {mine:>13.3f} {ref:>18.3f} {ref / mine:>6.1f}x")
    first, last = checkpoints[0], checkpoints[-1]
    growth = results[last][0] / results[first][0]
    ref_growth = results[last][1] / results[first][1]
    print(f"growth {first}->{last} messages: ours {growth:.2f}x, re-render {ref_growth:.2f}x")
    target = results[last][0] < 1.0
    print(f"target (< 1 ms per step at {last} messages): {'met' if target else 'NOT met'}")


if __name__ == "__main__":
    main()
