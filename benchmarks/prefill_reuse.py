"""Prefill reuse: TransformersModel's kept KV cache against re-prefilling every step.

A random-weight gpt-oss (6 layers, hidden 512: large enough that compute
dominates) runs a 10-step tool episode through the real Agent loop, with
200-token tool outputs. The model's "choices" are forced to a script so both
runs do identical work; every token still goes through a real forward pass.
The baseline resets the cache before each step, as a stateless server call
without prefix caching would.

    .venv/bin/python benchmarks/prefill_reuse.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from transformers import GptOssConfig, GptOssForCausalLM  # noqa: E402

from agent import Agent  # noqa: E402
from agent.harmony import encode_completion  # noqa: E402
from agent.models.transformers_model import TransformersModel  # noqa: E402
from tools import function_tool  # noqa: E402

STEPS = 10
TOOL_OUTPUT = " ".join(f"row{i}=value{i}" for i in range(60))  # about 200 tokens


@function_tool
async def fetch_rows(page: int) -> str:
    """Return a page of rows."""
    return f"page {page}: {TOOL_OUTPUT}"


def script() -> list[list[int]]:
    calls = [
        f'<|channel|>analysis<|message|>Fetch page {i}.<|end|><|start|>assistant'
        f'<|channel|>commentary to=functions.fetch_rows <|constrain|>json<|message|>{{"page": {i}}}<|call|>'
        for i in range(1, STEPS)
    ]
    return [encode_completion(c) for c in calls] + [encode_completion("<|channel|>final<|message|>All pages read.<|return|>")]


class ForcedModel(TransformersModel):
    """Runs the real model but emits scripted tokens instead of sampling."""

    def __init__(self, model, completions, *, reuse: bool) -> None:
        super().__init__(model)
        self.completions = [list(c) for c in completions]
        self.reuse = reuse
        self._current: list[int] = []
        self.prefill_seconds = 0.0

    def _sample(self, logits, sampling, generator):
        return self._current.pop(0)

    async def generate(self, prompt, *, stop, sampling):
        if not self.reuse:
            self.reset_cache()
        self._current = self.completions.pop(0)
        async for token in super().generate(prompt, stop=stop, sampling=sampling):
            yield token
        self.prefill_seconds += self.last_stats.prefill_seconds


def build_model() -> GptOssForCausalLM:
    config = GptOssConfig(
        num_hidden_layers=6, hidden_size=512, intermediate_size=512, num_attention_heads=8, num_key_value_heads=4,
        head_dim=64, num_local_experts=4, num_experts_per_tok=2, vocab_size=201088, sliding_window=128,
        layer_types=["sliding_attention", "full_attention"] * 3, max_position_embeddings=16384,
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


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = build_model()
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
    print(f"re-prefill / kept cache: {full / reused:.1f}x tokens, {full_prefill / reuse_prefill:.1f}x prefill time, "
          f"{full_wall / reuse_wall:.1f}x episode wall time (target >= 5x)")
    decode = reuse_wall - reuse_prefill
    print(f"decode (identical in both runs) took {decode:.2f} s of the kept-cache episode: on this machine each "
          "decoded token pays for the 201k-vocabulary output projection")


if __name__ == "__main__":
    main()
