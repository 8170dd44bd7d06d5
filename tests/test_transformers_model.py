"""TransformersModel on a tiny random-weight GptOssForCausalLM: real generation and cache reuse."""

import asyncio

import pytest

torch = pytest.importorskip("torch")

from agent import Agent
from agent.harmony import stop_tokens
from agent.models import SamplingParams
from agent.models.transformers_model import TransformersModel


def generate(model, prompt, **sampling):
    async def go():
        return [t async for t in model.generate(prompt, stop=stop_tokens(), sampling=SamplingParams(**sampling))]

    return asyncio.run(go())


def fresh_logits(model, tokens):
    with torch.inference_mode():
        return model(input_ids=torch.tensor([tokens])).logits[0, -1].float()


def test_generation_stops_at_max_tokens_and_is_reproducible(tiny_model):
    model = TransformersModel(tiny_model)
    prompt = list(range(1000, 1040))
    first = generate(model, prompt, max_tokens=6, seed=1)
    model.reset_cache()
    again = generate(model, prompt, max_tokens=6, seed=1)
    assert len(first) <= 6 and first == again
    assert model.last_stats.prompt_tokens == 40 and model.last_stats.prefilled_tokens == 40


def test_extending_prompt_prefills_only_new_tokens_with_equal_logits(tiny_model):
    model = TransformersModel(tiny_model)
    prompt = list(range(2000, 2050))
    out = generate(model, prompt, max_tokens=5, temperature=0)
    extended = prompt + out + list(range(3000, 3020))
    model._reuse(extended)
    cached = len(model._cached_tokens)
    assert cached == len(prompt) + len(out) - 1
    reused = model._forward(extended[cached:])
    assert torch.allclose(reused, fresh_logits(tiny_model, extended), atol=1e-4)
    model.reset_cache()
    generate(model, prompt, max_tokens=5, temperature=0)
    generate(model, extended, max_tokens=1, temperature=0)
    assert model.last_stats.prefilled_tokens == len(extended) - cached


def test_diverging_prompt_crops_to_common_prefix_within_sliding_window(tiny_model):
    model = TransformersModel(tiny_model)
    prompt = list(range(100, 160))  # shorter than the 128-token sliding window
    generate(model, prompt, max_tokens=1, temperature=0)
    diverged = prompt[:40] + list(range(500, 510))
    start = model._reuse(diverged)
    assert start == 40 and model._cache.get_seq_length() == 40
    logits = model._forward(diverged[start:])
    assert torch.allclose(logits, fresh_logits(tiny_model, diverged), atol=1e-4)


def test_divergence_past_the_sliding_window_recomputes(tiny_model):
    model = TransformersModel(tiny_model)
    prompt = list(range(100, 400))  # longer than the 128-token window: the sliding layer forgot the start
    generate(model, prompt, max_tokens=1, temperature=0)
    diverged = prompt[:50] + [7, 8, 9]
    assert model._reuse(diverged) == 0
    logits = model._forward(diverged)
    assert torch.allclose(logits, fresh_logits(tiny_model, diverged), atol=1e-4)


def test_agent_loop_reuses_the_cache_across_steps(tiny_model):
    """Two turns through the loop with real generation: the second prefills only what is new."""
    model = TransformersModel(tiny_model)
    agent = Agent(model, max_tokens=8, max_steps=2, sampling=SamplingParams(seed=0))
    first = agent.run("Say something.")
    assert first.usage.generations >= 1
    gens1 = [e for e in first.events if e.type == "generation"]
    second = agent.run("And again.", previous=first)
    gen2 = [e for e in second.events if e.type == "generation"][0]
    last = gens1[-1]
    cached = last.prompt_tokens + last.completion_tokens - 1
    assert gen2.prefilled_tokens == gen2.prompt_tokens - cached
    assert gen2.prefilled_tokens < gen2.prompt_tokens / 2


def test_bad_model_id_is_a_clear_error(tmp_path, monkeypatch):
    from agent.models import ModelError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        TransformersModel(str(tmp_path / "no-such-model"))
