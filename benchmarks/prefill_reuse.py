"""Prefill reuse: TransformersModel's kept KV cache against re-prefilling every step.

A random-weight gpt-oss (6 layers, hidden 512: large enough that compute
dominates) runs a 10-step tool episode through the real Agent loop, with
200-token tool outputs. The model's "choices" are forced to a script so both
runs do identical work; every token still goes through a real forward pass.
The baseline resets the cache before each step, as a stateless server call
without prefix caching would.

A second, multi-turn episode (several user turns, each longer than the
128-token sliding window, each with an analysis note and a tool call) checks
rewinds: at every new user turn the loop drops the previous turn's analysis,
so the prompt leaves the cached tokens part-way. The kept cache with
full-length sliding-window layers (the default) is cut back to the common
prefix; the windowed cache (``full_sliding_cache=False``, what the model did
before) cannot go back past its window and refills the whole prompt. Both are
printed per turn, with the largest logit difference between the rewound cache
and a fresh prefill of the same prompt.

    .venv/bin/python benchmarks/prefill_reuse.py [--quick]

``--quick`` uses a 2-layer, 128-wide model, two user turns and no warm-up episodes, so CI can check in seconds that the
script still runs and prints its ratios (the ratios are then smaller: compute matters less at that size).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from transformers import GptOssConfig, GptOssForCausalLM

from harmony_agent import Agent
from harmony_agent.harmony.encoding import encode_completion
from harmony_agent.models.transformers_model import TransformersModel
from harmony_agent.tools import function_tool

STEPS = 10
TOOL_OUTPUT = " ".join(f"row{i}=value{i}" for i in range(60))  # about 200 tokens


@function_tool
async def fetch_rows(page: int) -> str:
    """Return a page of rows."""
    return f"page {page}: {TOOL_OUTPUT}"


def script() -> list[list[int]]:
    calls = [
        f"<|channel|>analysis<|message|>Fetch page {i}.<|end|><|start|>assistant"
        f'<|channel|>commentary to=functions.fetch_rows <|constrain|>json<|message|>{{"page": {i}}}<|call|>'
        for i in range(1, STEPS)
    ]
    return [encode_completion(c) for c in calls] + [
        encode_completion("<|channel|>final<|message|>All pages read.<|return|>")
    ]


class ForcedModel(TransformersModel):
    """Runs the real model but emits scripted tokens instead of sampling."""

    def __init__(self, model, completions, *, reuse: bool, check: bool = False, **options) -> None:
        super().__init__(model, **options)
        self.completions = [list(c) for c in completions]
        self.reuse = reuse
        self.check = check  # compare each prompt's first logits with a fresh prefill (untimed runs only)
        self.max_logit_diff = 0.0
        self._current: list[int] = []
        self._prompt: list[int] | None = None
        self.prefill_seconds = 0.0
        self.per_call_prefill: list[float] = []

    def _sample(self, logits, sampling, generator):
        if self.check and self._prompt is not None:
            with torch.inference_mode():
                fresh = self.model(input_ids=torch.tensor([self._prompt])).logits[0, -1].float()
            self.max_logit_diff = max(self.max_logit_diff, float((logits - fresh).abs().max()))
            self._prompt = None
        return self._current.pop(0)

    async def generate(self, prompt, *, stop, sampling):
        if not self.reuse:
            self.reset_cache()
        self._current = self.completions.pop(0)
        self._prompt = list(prompt)
        async for token in super().generate(prompt, stop=stop, sampling=sampling):
            yield token
        self.prefill_seconds += self.last_stats.prefill_seconds
        self.per_call_prefill.append(self.last_stats.prefill_seconds)


def build_model(quick: bool = False) -> GptOssForCausalLM:
    layers, width = (2, 128) if quick else (6, 512)
    config = GptOssConfig(
        num_hidden_layers=layers,
        hidden_size=width,
        intermediate_size=width,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=64,
        num_local_experts=4,
        num_experts_per_tok=2,
        vocab_size=201088,
        sliding_window=128,
        layer_types=["sliding_attention", "full_attention"] * (layers // 2),
        max_position_embeddings=16384,
    )
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return GptOssForCausalLM(config).eval()


def episode(model, reuse: bool) -> tuple[int, int, float, float, str | None]:
    forced = ForcedModel(model, script(), reuse=reuse)
    agent = Agent(forced, tools=[fetch_rows], max_steps=STEPS + 1)
    started = time.perf_counter()
    result = asyncio.run(agent.arun("Read every page of rows."))
    wall = time.perf_counter() - started
    last = [e for e in result.events if e.type == "generation"][-1]
    final_context = last.prompt_tokens + last.completion_tokens
    return result.usage.prefilled_tokens, final_context, wall, forced.prefill_seconds, result.final_text


TURNS = 4
NOTES = " ".join(f"note{i}" for i in range(100))  # makes each user turn about 200 tokens


def turn_script(turn: int) -> list[list[int]]:
    """One user turn: an analysis note and a tool call, then a final answer (the note is dropped next turn)."""
    call = (
        f"<|channel|>analysis<|message|>Turn {turn}: fetch page {turn}.<|end|><|start|>assistant"
        f'<|channel|>commentary to=functions.fetch_rows <|constrain|>json<|message|>{{"page": {turn}}}<|call|>'
    )
    return [encode_completion(call), encode_completion(f"<|channel|>final<|message|>Page {turn} read.<|return|>")]


def multi_turn(model, *, check: bool = False, **options) -> tuple[list[tuple[int, int, int, float]], float, float]:
    """Run TURNS user turns in one conversation; per turn (prompt tokens, prefilled, reused, prefill s)."""
    forced = ForcedModel(
        model, [c for t in range(1, TURNS + 1) for c in turn_script(t)], reuse=True, check=check, **options
    )
    agent = Agent(forced, tools=[fetch_rows], max_steps=4)
    turns, previous, wall = [], None, 0.0
    for turn in range(1, TURNS + 1):
        before = len(forced.per_call_prefill)
        started = time.perf_counter()
        previous = asyncio.run(agent.arun(f"Turn {turn}: read page {turn}. {NOTES}", previous=previous))
        wall += time.perf_counter() - started
        assert previous.final_text == f"Page {turn} read.", previous.final_text
        gens = [e for e in previous.events if e.type == "generation"]
        turns.append(
            (
                gens[-1].prompt_tokens,
                previous.usage.prefilled_tokens,
                sum(g.cached_tokens for g in gens),
                sum(forced.per_call_prefill[before:]),
            )
        )
    return turns, wall, forced.max_logit_diff


def report_multi_turn(model, warm_up: bool = True) -> None:
    if warm_up:
        multi_turn(model)
    kept, kept_wall, _ = multi_turn(model)
    windowed, windowed_wall, _ = multi_turn(model, full_sliding_cache=False)
    _, _, kept_diff = multi_turn(model, check=True)
    _, _, windowed_diff = multi_turn(model, check=True, full_sliding_cache=False)
    print(
        f"\nmulti-turn: {TURNS} user turns (~200 tokens each, past the 128-token window), each an analysis "
        "note, a tool call (~200-token output) and an answer; the note is dropped at the next turn"
    )
    print(
        f"{'turn':>4} {'final prompt':>13} | {'full sliding cache: prefilled':>30} {'prefill s':>9} | "
        f"{'windowed cache: prefilled':>26} {'prefill s':>9}"
    )
    for i, ((context, prefilled, _, seconds), (_, w_prefilled, _, w_seconds)) in enumerate(zip(kept, windowed), 1):
        print(f"{i:>4} {context:>13} | {prefilled:>30} {seconds:>9.3f} | {w_prefilled:>26} {w_seconds:>9.3f}")
    total = sum(t[1] for t in kept), sum(t[3] for t in kept)
    w_total = sum(t[1] for t in windowed), sum(t[3] for t in windowed)
    print(f"{'all':>4} {'':>13} | {total[0]:>30} {total[1]:>9.3f} | {w_total[0]:>26} {w_total[1]:>9.3f}")
    later = sum(t[1] for t in kept[1:]), sum(t[1] for t in windowed[1:])
    print(
        f"turns 2-{TURNS}: windowed / full = {later[1] / later[0]:.1f}x tokens prefilled, "
        f"{sum(t[3] for t in windowed[1:]) / sum(t[3] for t in kept[1:]):.1f}x prefill time; "
        f"episode wall {kept_wall:.2f} s against {windowed_wall:.2f} s"
    )
    print(
        "(after the rewind the full cache still re-feeds what followed the dropped note: the tool call, its "
        "output and the answer, then the new user turn)"
    )
    print(
        f"max |logit - fresh prefill| at each generation's first token: full sliding cache {kept_diff:.2e}, "
        f"windowed {windowed_diff:.2e} (fp32)"
    )
    layers = sum(t == "sliding_attention" for t in model.config.layer_types)
    per_token = 2 * layers * model.config.num_key_value_heads * model.config.head_dim * 4
    print(
        f"memory: the full sliding cache adds {per_token / 1024:.0f} KiB per token here "
        f"({layers} sliding layers, fp32), as much as the full-attention layers"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 2-layer, 128-wide model and no warm-up episode")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = build_model(args.quick)
    if not args.quick:
        episode(model, True)  # warm-up (allocator, kernels)
    reused, context, reuse_wall, reuse_prefill, answer = episode(model, True)
    full, context_b, full_wall, full_prefill, answer_b = episode(model, False)
    assert answer == answer_b == "All pages read.", (answer, answer_b)
    assert context == context_b
    print(f"episode: {STEPS} steps, final context {context} tokens, tool outputs ~200 tokens")
    print(f"{'':24} {'prefilled tokens':>17} {'prefill s':>10} {'episode s':>10}")
    print(f"{'kept KV cache':24} {reused:>17} {reuse_prefill:>10.2f} {reuse_wall:>10.2f}")
    print(f"{'re-prefill every step':24} {full:>17} {full_prefill:>10.2f} {full_wall:>10.2f}")
    print(f"prefilled / final context: {reused / context:.3f} (target <= 1.05)")
    print(
        f"re-prefill / kept cache: {full / reused:.1f}x tokens, {full_prefill / reuse_prefill:.1f}x prefill time, "
        f"{full_wall / reuse_wall:.1f}x episode wall time (target >= 5x)"
    )
    decode = reuse_wall - reuse_prefill
    print(
        f"decode (identical in both runs) took {decode:.2f} s of the kept-cache episode: on this machine each "
        "decoded token pays for the 201k-vocabulary output projection"
    )
    if args.quick:
        global TURNS
        TURNS = 2  # the least that still rewinds once
    report_multi_turn(model, warm_up=not args.quick)


if __name__ == "__main__":
    main()
