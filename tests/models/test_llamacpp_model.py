"""LlamaCppModel on real GGUF files made on the spot with llama.cpp's own converter.

Two tiny gpt-oss models (2 layers, sliding + full attention, 4 experts, the
o200k_harmony vocabulary), converted once per session in float32:

* the hand-set one of tests/tiny_gpt_oss.py, whose greedy output is a known
  tool call and then a known answer, for real multi-step agent runs;
* a random-weight one, where every layer moves the logits, for the checks that
  a reused cache gives the same logits as a fresh evaluation and that llama.cpp
  agrees with transformers.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from helpers import ROOT
from helpers.available import require

np = pytest.importorskip("numpy")

from harmony_agent import Agent
from harmony_agent.harmony.encoding import get_encoding, stop_tokens
from harmony_agent.models import ModelError, SamplingParams, load_model
from helpers.cli_support import run_cli
from helpers.completions import get_weather
from helpers.tiny_gguf import PYTHON_ANSWER_SCRIPT, PYTHON_CALL_SCRIPT, convert, make_tiny_gguf, write_random_gpt_oss
from helpers.tiny_gpt_oss import ANSWER_SCRIPT, CALL_SCRIPT, script_tokens

CALL, RETURN, MESSAGE = 200012, 200002, 200008


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    require("llamacpp")
    return write_random_gpt_oss(tmp_path_factory.mktemp("random-gpt-oss") / "checkpoint")


@pytest.fixture(scope="session")
def random_gguf(random_checkpoint, tmp_path_factory) -> Path:
    return convert(random_checkpoint, tmp_path_factory.mktemp("gguf") / "random-gpt-oss.gguf")


@pytest.fixture(scope="module")
def random_model(random_gguf):
    from harmony_agent.models.llamacpp import LlamaCppModel

    model = LlamaCppModel(random_gguf, n_ctx=2048, n_threads=2)
    yield model
    asyncio.run(model.aclose())


def generate(model, prompt, stop=None, **sampling):
    async def go():
        stops = stop_tokens() if stop is None else stop
        return [t async for t in model.generate(prompt, stop=stops, sampling=SamplingParams(**sampling))]

    return asyncio.run(go())


def harmony_ids(text: str) -> list[int]:
    return list(get_encoding().encode(text, allowed_special="all"))


def user_prompt(words: int) -> list[int]:
    text = " ".join(f"word{i}" for i in range(words))
    return harmony_ids(f"<|start|>user<|message|>{text}<|end|><|start|>assistant")


# -- the vocabulary -------------------------------------------------------------------


def test_gguf_vocabulary_is_harmony_token_for_token(scripted_gguf):
    """The converted vocabulary round-trips harmony's ids, so harmony can do all tokenizing."""
    import llama_cpp

    llama = llama_cpp.Llama(str(scripted_gguf), vocab_only=True, verbose=False)
    encoding = get_encoding()
    texts = [
        CALL_SCRIPT,
        ANSWER_SCRIPT,
        "<|start|>system<|message|>You are ChatGPT.\nReasoning: medium<|end|><|start|>user<|message|>Wie ist das Wetter? 日本語 🎉<|end|>",
        '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{"temp": -3.5}<|end|>',
        "naïve café, Ελληνικά, русский, عربى, 한국어\r\n\t  code()   ",
    ]
    for text in texts:
        ids = harmony_ids(text)
        assert llama.detokenize(ids, special=True).decode() == text
        assert llama.tokenize(text.encode(), add_bos=False, special=True) == ids, text[:40]
    assert llama.n_vocab() == 201088
    for token in (200002, 200005, 200006, 200007, 200008, 200012, 199999):
        assert llama.detokenize([token], special=True).decode() == encoding.decode([token])
    llama.close()


# -- generation on the hand-set model --------------------------------------------------


def test_greedy_output_is_the_script_and_stops_on_harmony_stop_tokens(scripted_gguf):
    from harmony_agent.models.llamacpp import LlamaCppModel

    model = LlamaCppModel(scripted_gguf, n_ctx=1024)
    prompt = harmony_ids("<|start|>user<|message|>Weather in Paris?<|end|><|start|>assistant")
    assert generate(model, prompt, temperature=0) == script_tokens(CALL_SCRIPT)
    stats = model.last_stats
    assert (stats.prompt_tokens, stats.prefilled_tokens, stats.cached_tokens) == (len(prompt), len(prompt), 0)
    assert stats.completion_tokens == len(script_tokens(CALL_SCRIPT))
    # The stop set is the caller's, not llama.cpp's end-of-generation list.
    assert generate(model, prompt, stop=[MESSAGE], temperature=0)[-1] == MESSAGE
    no_stop = generate(model, prompt, stop=[], temperature=0, max_tokens=20)
    assert len(no_stop) == 20 and CALL in no_stop
    # Sampling at temperature 1 follows the script too (the margins are wide), reproducibly by seed.
    assert generate(model, prompt, temperature=1.0, seed=5) == script_tokens(CALL_SCRIPT)


def test_agent_run_calls_the_tool_then_answers_with_exact_usage(scripted_gguf):
    """A real two-step run: step 2 evaluates only what step 1 did not leave in the cache."""
    from harmony_agent.models.llamacpp import LlamaCppModel

    model = LlamaCppModel(scripted_gguf, n_ctx=2048)
    agent = Agent(model, tools=[get_weather], sampling=SamplingParams(temperature=0))
    result = agent.run("What is the weather in Paris?")
    assert result.stop_reason == "final", [e for e in result.events if e.type == "error"]
    assert result.final_text == "It is 21 degrees in Paris."
    generations = [e for e in result.events if e.type == "generation"]
    assert [g.token_ids for g in generations] == [script_tokens(CALL_SCRIPT), script_tokens(ANSWER_SCRIPT)]
    tool_result = next(e for e in result.events if e.type == "tool_result")
    assert json.loads(tool_result.content) == {"city": "Paris", "temperature": 21, "unit": "celsius"}
    first, second = generations
    # Step 1's prompt and completion are in the cache, except the stop token (never evaluated).
    cached = first.prompt_tokens + first.completion_tokens - 1
    assert first.prefilled_tokens == first.prompt_tokens
    assert second.prefilled_tokens == second.prompt_tokens - cached
    assert second.prefilled_tokens < 40
    assert result.usage.prefilled_tokens == first.prompt_tokens + second.prefilled_tokens
    assert result.usage.completion_tokens == first.completion_tokens + second.completion_tokens
    # A new user turn drops nothing the model holds here (no analysis): it extends the cache again.
    again = agent.run("And tomorrow?", previous=result)
    gen = [e for e in again.events if e.type == "generation"][0]
    assert gen.prefilled_tokens == gen.prompt_tokens - (second.prompt_tokens + second.completion_tokens - 1)


def test_cli_runs_the_python_tool_through_llamacpp(tmp_path_factory):
    """The README's command: harmony-agent run … --model llamacpp:FILE --tools python."""
    require("llamacpp")
    require("bubblewrap")
    gguf = make_tiny_gguf(
        tmp_path_factory.mktemp("gguf") / "tiny-python.gguf",
        call_script=PYTHON_CALL_SCRIPT,
        answer_script=PYTHON_ANSWER_SCRIPT,
    )
    transcript = tmp_path_factory.mktemp("run") / "run.jsonl"
    root = ROOT
    completed = run_cli(
        [
            "run",
            "What is 6*7? Use python.",
            "--model",
            f"llamacpp:{gguf}?n_ctx=4096",
            "--tools",
            "python",
            "--sandbox",
            "bubblewrap",
            "--yes",
            "--transcript",
            str(transcript),
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    events = [json.loads(line) for line in transcript.read_text().splitlines()]
    results = [e for e in events if e["type"] == "tool_result"]
    assert results and results[0]["recipient"] == "python" and "42" in results[0]["content"]
    assert events[-1]["type"] == "run_end" and "The answer is 42." in completed.stdout


# -- the cache, on random weights ------------------------------------------------------


def fresh_logits(model, prompt):
    model.reset_cache()
    return model.logits(prompt)


def test_extending_a_prompt_evaluates_only_new_tokens_with_identical_logits(random_model):
    prompt = user_prompt(200)  # past the 128-token sliding window
    out = generate(random_model, prompt, temperature=0, max_tokens=5)
    extended = prompt + out + harmony_ids("<|start|>user<|message|>more<|end|><|start|>assistant")
    reused = random_model.logits(extended)
    assert random_model.last_stats is not None
    cached = len(prompt) + len(out) - 1
    assert random_model.cached_tokens == extended
    generate(random_model, prompt, temperature=0, max_tokens=5)
    generate(random_model, extended, temperature=0, max_tokens=1)
    assert random_model.last_stats.cached_tokens == cached
    assert random_model.last_stats.prefilled_tokens == len(extended) - cached
    np.testing.assert_allclose(reused, fresh_logits(random_model, extended), atol=1e-4, rtol=1e-4)


def test_rewinding_far_past_the_sliding_window_is_exact(random_model):
    """A new user turn drops old analysis: the cache is cut deep into a long prompt and stays exact."""
    prompt = user_prompt(600)
    random_model.logits(prompt)
    diverged = prompt[:300] + harmony_ids("<|start|>user<|message|>other<|end|><|start|>assistant")
    generate(random_model, diverged, temperature=0, max_tokens=1)
    assert random_model.last_stats.cached_tokens == 300
    assert random_model.last_stats.prefilled_tokens == len(diverged) - 300
    random_model.logits(prompt)
    reused = random_model.logits(diverged)
    np.testing.assert_allclose(reused, fresh_logits(random_model, diverged), atol=1e-4, rtol=1e-4)
    # Resending exactly the cached prompt re-evaluates only its last token.
    generate(random_model, diverged, temperature=0, max_tokens=1)
    generate(random_model, diverged, temperature=0, max_tokens=1)
    assert random_model.last_stats.prefilled_tokens == 1


def test_greedy_tokens_equal_transformers(random_model, random_checkpoint):
    torch = pytest.importorskip("torch")
    from transformers import GptOssForCausalLM

    from harmony_agent.models.transformers_model import TransformersModel

    reference = TransformersModel(GptOssForCausalLM.from_pretrained(random_checkpoint, dtype=torch.float32))
    prompt = user_prompt(150)
    random_model.reset_cache()
    ours = generate(random_model, prompt, stop=[], temperature=0, max_tokens=24)
    theirs = generate(reference, prompt, stop=[], temperature=0, max_tokens=24)
    assert ours == theirs


def test_seeded_sampling_is_reproducible_and_top_p_narrows(random_model):
    prompt = user_prompt(20)
    first = generate(random_model, prompt, stop=[], temperature=1.0, seed=11, max_tokens=12)
    random_model.reset_cache()
    assert generate(random_model, prompt, stop=[], temperature=1.0, seed=11, max_tokens=12) == first
    assert generate(random_model, prompt, stop=[], temperature=1.0, seed=12, max_tokens=12) != first
    # top_p that keeps one token is greedy.
    greedy = generate(random_model, prompt, stop=[], temperature=0, max_tokens=6)
    assert generate(random_model, prompt, stop=[], temperature=1.0, top_p=1e-9, seed=1, max_tokens=6) == greedy


def test_a_generation_abandoned_midway_leaves_a_consistent_cache(random_model):
    prompt = user_prompt(50)

    async def take_two():
        stream = random_model.generate(prompt, stop=[], sampling=SamplingParams(temperature=0))
        tokens = [await stream.__anext__(), await stream.__anext__()]
        await stream.aclose()
        return tokens

    random_model.reset_cache()
    tokens = asyncio.run(take_two())
    assert random_model.cached_tokens == prompt + tokens[:1]
    extended = prompt + tokens + [1000, 1001]
    reused = random_model.logits(extended)
    np.testing.assert_allclose(reused, fresh_logits(random_model, extended), atol=1e-4, rtol=1e-4)


# -- limits and bad input -------------------------------------------------------------


def test_context_window_comes_from_n_ctx_and_a_full_context_ends_the_run(scripted_gguf):
    model = load_model(f"llamacpp:{scripted_gguf}?n_ctx=256&n_threads=1")
    assert model.context_window == 256
    # A prompt that leaves room for three tokens: generation stops there, without a crash.
    prompt = user_prompt(300)[-253:]
    tokens = generate(model, prompt, stop=[], temperature=0)
    assert len(tokens) == 3 and model.cached_tokens == prompt + tokens[:2]
    with pytest.raises(ModelError, match="does not fit the context window"):
        generate(model, user_prompt(300))
    # Through the loop, a prompt that fills the window ends the run with context_window.
    result = Agent(model, tools=[get_weather], instructions="word " * 300).run("Weather?")
    assert result.stop_reason == "context_window"


def test_bad_token_ids_and_bad_specs_are_clear_errors(scripted_gguf, tmp_path):
    from harmony_agent.models.llamacpp import LlamaCppModel, resolve_gguf

    model = LlamaCppModel(scripted_gguf, n_ctx=256)
    with pytest.raises(ModelError, match="outside this model's vocabulary"):
        generate(model, [1, 2, 300000])
    with pytest.raises(ModelError, match="empty prompt"):
        generate(model, [])
    assert generate(model, user_prompt(3), temperature=0)[-1] == CALL  # still usable
    with pytest.raises(ModelError, match="no GGUF file"):
        load_model(f"llamacpp:{tmp_path / 'missing.gguf'}")
    with pytest.raises(ModelError, match="unknown llamacpp option"):
        load_model(f"llamacpp:{scripted_gguf}?context=5")
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf at all")
    with pytest.raises(ModelError, match="could not load"):
        LlamaCppModel(garbage)
    with pytest.raises(ModelError, match="hf download someone/missing-GGUF"):
        resolve_gguf("someone/missing-GGUF", cache_dir=tmp_path / "hub")


def test_repo_ids_resolve_from_the_hugging_face_cache(scripted_gguf, tmp_path):
    """``llamacpp:REPO_ID[:FILE]`` finds the file in a Hugging Face cache laid out as the hub client does."""
    from harmony_agent.models.llamacpp import resolve_gguf

    hub = tmp_path / "hub"
    repo = hub / "models--tiny--gpt-oss-GGUF"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    (snapshot / "tiny-f32.gguf").symlink_to(scripted_gguf)
    assert resolve_gguf("tiny/gpt-oss-GGUF", cache_dir=hub).name == "tiny-f32.gguf"
    assert resolve_gguf("tiny/gpt-oss-GGUF:tiny-f32.gguf", cache_dir=hub).resolve() == scripted_gguf.resolve()
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        resolve_gguf("tiny/gpt-oss-GGUF:other.gguf", cache_dir=hub)
    (snapshot / "tiny-q8.gguf").symlink_to(scripted_gguf)
    with pytest.raises(ModelError, match="several GGUF files"):
        resolve_gguf("tiny/gpt-oss-GGUF", cache_dir=hub)


def test_memory_estimate_reads_the_gguf_header_and_doctor_reports_the_backend(scripted_gguf):
    from harmony_agent.cli.doctor import _llamacpp
    from harmony_agent.models.llamacpp import LlamaCppModel, memory_needed

    weights = memory_needed(scripted_gguf, n_ctx=0)
    assert 0.8 * scripted_gguf.stat().st_size < weights < scripted_gguf.stat().st_size  # the rest is the vocabulary
    # Two layers, two KV heads of 64, keys and values in f16, per token.
    assert memory_needed(scripted_gguf, n_ctx=1000) - weights == 2 * 2 * 64 * 2 * 2 * 1000
    check = _llamacpp("llamacpp:nobody/not-cached-GGUF")
    assert "llama-cpp-python 0.3.36" in check.detail and "not cached" in check.detail
    assert not check.ok and check.hint.startswith("hf download ggml-org/gpt-oss-20b-GGUF")  # the route, with its fix
    import llama_cpp

    if not llama_cpp.llama_supports_gpu_offload():
        with pytest.raises(ModelError, match="no GPU support"):
            LlamaCppModel(scripted_gguf, n_gpu_layers=-1)
