"""TransformersModel rewinding its KV cache past the sliding window (issue 18).

A new user turn drops the previous turn's analysis, so its prompt leaves the
cached tokens part-way: the cache must be cut back to the common prefix and
only the rest prefilled, also once the sequence is longer than the 128-token
sliding window, and the logits must then equal a fresh prefill's. The tiny
random-weight gpt-oss of conftest (sliding layer, full layer, window 128, fp32,
eager attention) makes the logits checks; the hand-set tiny gpt-oss of
tests/tiny_gpt_oss.py, with its tool call on the analysis channel, runs real
multi-turn episodes through the Agent.
"""

import pytest

torch = pytest.importorskip("torch")

from test_transformers_model import fresh_logits, generate

from harmony_agent import Agent, SamplingParams
from harmony_agent.harmony.encoding import get_encoding
from harmony_agent.models.base import common_prefix
from harmony_agent.models.transformers_model import TransformersModel
from helpers.completions import get_weather
from helpers.tiny_gpt_oss import ANSWER_SCRIPT, hand_set_weights, script_tokens, tiny_config

WINDOW = 128
PROMPT = list(range(1000, 1300))  # 300 tokens: past the window
TIGHT = {"rtol": 1e-5, "atol": 1e-5}


def test_resending_the_cached_prompt_prefills_one_token(tiny_model):
    assert tiny_model.config.sliding_window == WINDOW < len(PROMPT)
    assert "sliding_attention" in tiny_model.config.layer_types
    model = TransformersModel(tiny_model)
    generate(model, PROMPT, max_tokens=1, temperature=0)
    cached = list(model._cached_tokens)
    assert len(cached) == len(PROMPT)  # the one sampled token was never fed back
    generate(model, cached, max_tokens=1, temperature=0)
    assert model.last_stats.prefilled_tokens == 1 and model.last_stats.cached_tokens == len(cached) - 1


@pytest.mark.parametrize("rewind", [1, 40, 150, 250])
def test_rewind_past_the_window_prefills_only_the_new_suffix_with_fresh_logits(tiny_model, rewind):
    model = TransformersModel(tiny_model)
    out = generate(model, PROMPT, max_tokens=4, temperature=0)
    context = PROMPT + out[:-1]  # what the cache holds
    assert model._cached_tokens == context
    keep = len(context) - rewind
    suffix = list(range(5000, 5030))
    prompt = context[:keep] + suffix
    start = model._reuse(prompt)
    assert start == keep and model._cache.get_seq_length() == keep
    logits = model._forward(prompt[start:])
    assert torch.allclose(logits, fresh_logits(tiny_model, prompt), **TIGHT)
    # Through generate too: usage counts only the suffix, and greedy decoding matches a fresh model's.
    model.reset_cache()
    generate(model, PROMPT, max_tokens=4, temperature=0)
    after_rewind = generate(model, prompt, max_tokens=6, temperature=0)
    assert model.last_stats.prefilled_tokens == len(suffix) and model.last_stats.cached_tokens == keep
    assert after_rewind == generate(TransformersModel(tiny_model), prompt, max_tokens=6, temperature=0)


def test_decoding_after_a_rewind_keeps_logits_equal_to_a_fresh_prefill(tiny_model):
    """Every step after the rewind, while the new tokens push the window along, still matches."""
    model = TransformersModel(tiny_model)
    generate(model, PROMPT, max_tokens=1, temperature=0)
    prompt = PROMPT[:200] + [7, 8, 9]
    assert model._reuse(prompt) == 200
    logits = model._forward(prompt[200:])
    for step in range(WINDOW // 8):
        assert torch.allclose(logits, fresh_logits(tiny_model, prompt), **TIGHT), step
        token = 2000 + step
        prompt.append(token)
        logits = model._forward([token])
    assert model._cached_tokens == prompt


def test_windowed_cache_stays_available_and_refills_when_it_cannot_rewind(tiny_model):
    """full_sliding_cache=False keeps only the window (less memory): a far rewind rebuilds, still exactly."""
    model = TransformersModel(tiny_model, full_sliding_cache=False)
    generate(model, PROMPT, max_tokens=1, temperature=0)
    prompt = PROMPT[:50] + [7, 8, 9]
    assert model._reuse(prompt) == 0
    assert torch.allclose(model._forward(prompt), fresh_logits(tiny_model, prompt), **TIGHT)


# --- multi-turn episodes through the Agent --------------------------------------

#: The tiny model's tool call, on the analysis channel: at the next user turn the loop drops it
#: (and the tool's answer to it), so that turn's prompt rewinds the cache.
ANALYSIS_CALL = '<|channel|>analysis to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>'


@pytest.fixture(scope="module")
def scripted_lm():
    from transformers import GptOssForCausalLM

    first = get_encoding().encode("<|start|>assistant", allowed_special="all")[-1]
    with torch.device("cpu"):
        lm = GptOssForCausalLM(tiny_config()).to(torch.float32)
    hand_set_weights(lm, script_tokens(ANALYSIS_CALL), script_tokens(ANSWER_SCRIPT), first)
    lm.config._attn_implementation = "eager"
    return lm.eval()


class RecordingModel(TransformersModel):
    """The real model, also keeping each prompt it was given and what it generated."""

    def __init__(self, lm):
        super().__init__(lm)
        self.calls: list[tuple[list[int], list[int]]] = []

    async def generate(self, prompt, *, stop, sampling):
        out: list[int] = []
        self.calls.append((list(prompt), out))
        async for token in super().generate(prompt, stop=stop, sampling=sampling):
            out.append(token)
            yield token


def contains(tokens: list[int], part: list[int]) -> bool:
    return any(tokens[i : i + len(part)] == part for i in range(len(tokens) - len(part) + 1))


def long_question(turn: int) -> str:
    """A user message of a few hundred tokens, so every turn alone passes the 128-token window."""
    return f"Turn {turn}: what is the weather in Paris? Context: " + " ".join(f"note{turn}x{i}" for i in range(80))


def test_multi_turn_episode_prefills_only_the_new_tokens_each_turn(scripted_lm):
    model = RecordingModel(scripted_lm)
    agent = Agent(model, tools=[get_weather], sampling=SamplingParams(temperature=0))
    results = [agent.run(long_question(1))]
    for turn in (2, 3):
        results.append(agent.run(long_question(turn), previous=results[-1]))
    for result in results:
        assert result.stop_reason == "final" and result.final_text == "It is 21 degrees in Paris.", result.error
    assert len(model.calls) == 6  # a call and an answer per turn
    call = script_tokens(ANALYSIS_CALL)
    for turn in (1, 2):
        (last_prompt, last_out), (prompt, _) = model.calls[2 * turn - 1], model.calls[2 * turn]
        held = last_prompt + last_out[:-1]  # the cache after the previous turn
        common = common_prefix(held, prompt)
        # The analysis call was dropped: the prompt leaves the cached tokens, past the sliding window.
        assert contains(held, call) and not contains(prompt, call)
        assert common < len(held) and common > WINDOW
        generations = [e for e in results[turn].events if e.type == "generation"]
        assert generations[0].prefilled_tokens == len(prompt) - common
        assert generations[0].cached_tokens == common
        # The turn's later step extends the cache: only its tool result and header are new.
        step_prompt = model.calls[2 * turn + 1][0]
        assert generations[1].prefilled_tokens == len(step_prompt) - (len(prompt) + len(model.calls[2 * turn][1]) - 1)
        assert results[turn].usage.prefilled_tokens == sum(g.prefilled_tokens for g in generations)
        assert results[turn].usage.prefilled_tokens < len(step_prompt) / 2
