"""TransformersModel on tiny gpt-oss models: real generation and cache reuse, sharing, failing fast.

The cache tests run twice: on a random-weight GptOssForCausalLM built in memory, and on a checkpoint in
the released MXFP4 layout loaded through load_model (tests/mxfp4_checkpoint.py), as real users load gpt-oss.
"""

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from helpers import ROOT

torch = pytest.importorskip("torch")

from harmony_agent import Agent
from harmony_agent.harmony.encoding import stop_tokens
from harmony_agent.models import ModelError, SamplingParams, load_model
from harmony_agent.models.transformers_model import TransformersModel


@pytest.fixture(scope="module")
def mxfp4_folder(tmp_path_factory):
    from helpers.mxfp4_checkpoint import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("mxfp4-kv")).folder


@pytest.fixture(scope="module")
def mxfp4_model(mxfp4_folder):
    return load_model(f"transformers:{mxfp4_folder}", dtype=torch.float32).model


@pytest.fixture(params=["random", "mxfp4"])
def lm(request, tiny_model):
    """The model under the cache tests: in-memory random weights, or the MXFP4 checkpoint loaded."""
    return tiny_model if request.param == "random" else request.getfixturevalue("mxfp4_model")


def generate(model, prompt, **sampling):
    async def go():
        return [t async for t in model.generate(prompt, stop=stop_tokens(), sampling=SamplingParams(**sampling))]

    return asyncio.run(go())


def fresh_logits(model, tokens):
    with torch.inference_mode():
        return model(input_ids=torch.tensor([tokens])).logits[0, -1].float()


def test_generation_stops_at_max_tokens_and_is_reproducible(lm):
    model = TransformersModel(lm)
    prompt = list(range(1000, 1040))
    first = generate(model, prompt, max_tokens=6, seed=1)
    model.reset_cache()
    again = generate(model, prompt, max_tokens=6, seed=1)
    assert len(first) <= 6 and first == again
    assert model.last_stats.prompt_tokens == 40 and model.last_stats.prefilled_tokens == 40


def test_extending_prompt_prefills_only_new_tokens_with_equal_logits(lm):
    model = TransformersModel(lm)
    prompt = list(range(2000, 2050))
    out = generate(model, prompt, max_tokens=5, temperature=0)
    extended = prompt + out + list(range(3000, 3020))
    model._reuse(extended)
    cached = len(model._cached_tokens)
    assert cached == len(prompt) + len(out) - 1
    reused = model._forward(extended[cached:])
    assert torch.allclose(reused, fresh_logits(lm, extended), atol=1e-4)
    model.reset_cache()
    generate(model, prompt, max_tokens=5, temperature=0)
    generate(model, extended, max_tokens=1, temperature=0)
    assert model.last_stats.prefilled_tokens == len(extended) - cached


def test_diverging_prompt_crops_to_common_prefix_within_sliding_window(lm):
    model = TransformersModel(lm)
    prompt = list(range(100, 160))  # shorter than the 128-token sliding window
    generate(model, prompt, max_tokens=1, temperature=0)
    diverged = prompt[:40] + list(range(500, 510))
    start = model._reuse(diverged)
    assert start == 40 and model._cache.get_seq_length() == 40
    logits = model._forward(diverged[start:])
    assert torch.allclose(logits, fresh_logits(lm, diverged), atol=1e-4)


def test_divergence_past_the_sliding_window_crops_exactly(lm):
    model = TransformersModel(lm)
    prompt = list(range(100, 400))  # longer than the 128-token window: the sliding layers keep every position
    generate(model, prompt, max_tokens=1, temperature=0)
    diverged = prompt[:50] + [7, 8, 9]
    assert model._reuse(diverged) == 50
    logits = model._forward(diverged[50:])
    assert torch.allclose(logits, fresh_logits(lm, diverged), atol=1e-4)


def test_agent_loop_reuses_the_cache_across_steps(lm):
    """Two turns through the loop with real generation: the second prefills only what is new."""
    model = TransformersModel(lm)
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


# --- one model, several sessions ------------------------------------------------


def conversation(model, opening, steps=3):
    """A session's generations: each prompt extends the last with the output and a tool result."""

    async def go():
        prompt, outputs = list(opening), []
        for step in range(steps):
            out = [
                t async for t in model.generate(prompt, stop=[], sampling=SamplingParams(max_tokens=4, temperature=0))
            ]
            outputs.append(out)
            prompt = prompt + out + list(range(5000 + 10 * step, 5006 + 10 * step))
        return outputs

    return go


OPENINGS = (list(range(1000, 1030)), list(range(1000, 1010)) + list(range(7000, 7025)))


def alone(tiny_model, opening):
    return asyncio.run(conversation(TransformersModel(tiny_model), opening)())


def test_two_threads_with_their_own_event_loops_share_one_model(tiny_model):
    expected = [alone(tiny_model, o) for o in OPENINGS]
    shared = TransformersModel(tiny_model)
    barrier = threading.Barrier(2)
    results, errors = [None, None], []

    def session(i):
        try:
            barrier.wait()
            results[i] = asyncio.run(conversation(shared, OPENINGS[i])())
        except BaseException as exc:  # reported below with the thread's results
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert results == expected


def test_two_sessions_on_one_loop_alternate_and_keep_their_outputs(tiny_model):
    expected = [alone(tiny_model, o) for o in OPENINGS]
    shared = TransformersModel(tiny_model)

    async def both():
        return list(await asyncio.gather(*(conversation(shared, o)() for o in OPENINGS)))

    assert asyncio.run(both()) == expected


def test_a_cancelled_waiter_does_not_keep_the_model(tiny_model):
    model = TransformersModel(tiny_model)
    sampling = SamplingParams(max_tokens=3, temperature=0)

    async def go():
        first = model.generate(list(range(100, 120)), stop=[], sampling=sampling)
        await first.__anext__()  # holds the model
        waiter = asyncio.ensure_future(model.generate(list(range(200, 220)), stop=[], sampling=sampling).__anext__())
        await asyncio.sleep(0.05)
        waiter.cancel()
        rest = [t async for t in first]
        later = [t async for t in model.generate(list(range(300, 320)), stop=[], sampling=sampling)]
        return rest, later

    rest, later = asyncio.run(asyncio.wait_for(go(), 60))
    assert len(rest) == 2 and len(later) == 3


# --- bfloat16 on the CPU under an OpenMP thread limit ----------------------------

BF16_CHECK = """
import sys, torch
sys.path.insert(0, "tests")
from helpers.completions import tiny_gpt_oss_config
from transformers import GptOssForCausalLM
from harmony_agent.models.transformers_model import TransformersModel
torch.manual_seed(0)
fp32 = GptOssForCausalLM(tiny_gpt_oss_config()).eval()
ids = list(range(1000, 1064))
with torch.inference_mode():
    want = fp32(input_ids=torch.tensor([ids])).logits[0, -1].float()
model = TransformersModel(fp32.to(torch.bfloat16))
worst = 0.0
for _ in range(3):
    junk = [torch.full((n,), float("nan")) for n in (4096, 65536, 1 << 20)]
    del junk
    model.reset_cache()
    model._reuse(ids)
    got = model._forward(ids)
    worst = max(worst, ((got - want).norm() / want.norm()).nan_to_num(99.0).item())
print("worst", worst)
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the thread limit matters only with two or more cores")
def test_bfloat16_logits_stay_right_under_an_openmp_thread_limit():
    root = ROOT
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_THREAD_LIMIT": "1"}
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run(
        [sys.executable, "-c", BF16_CHECK], capture_output=True, text=True, timeout=300, env=env, cwd=root
    )
    assert out.returncode == 0, out.stderr[-2000:]
    worst = float(out.stdout.split("worst")[-1])
    assert worst < 0.05, out.stdout  # bfloat16 rounding; garbage from skipped threads reads as NaN or 3e38


# --- failing fast when the weights cannot be had ---------------------------------


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.fixture
def hub_online(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def silent_server():
    """A port that accepts connections and never answers, like a hub behind a dropping firewall."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    return server


def test_missing_default_model_with_hf_hub_offline_fails_at_once(empty_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ModelError) as info:
        TransformersModel()  # openai/gpt-oss-20b
    assert time.perf_counter() - started < 2
    message = str(info.value)
    assert (
        "\n" not in message
        and "openai/gpt-oss-20b is not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in message
    )
    assert "hf download openai/gpt-oss-20b" in message and "--model http://HOST:PORT/v1" in message
    from harmony_agent.models import checkpoints

    if checkpoints.available_memory(cuda=False)[0] < 44e9 and not torch.cuda.is_available():
        assert "would also need about 44.5 GB of memory" in message  # 20b as bf16 on this CPU


def test_missing_model_with_a_silent_hub_fails_within_seconds(empty_hub_cache, hub_online, monkeypatch):
    from huggingface_hub import constants

    server = silent_server()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    try:
        started = time.perf_counter()
        with pytest.raises(
            ModelError, match=r"not in the local Hugging Face cache and the hub cannot be reached .*Timeout"
        ) as info:
            load_model("openai/gpt-oss-20b")
        assert time.perf_counter() - started < 6  # one 2 s probe, not a minute of retries
        assert "\n" not in str(info.value)
    finally:
        server.close()


def test_cached_model_loads_from_the_cache_when_the_hub_is_unreachable(
    empty_hub_cache, hub_online, mxfp4_folder, monkeypatch
):
    import shutil

    from huggingface_hub import constants

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens: connections are refused
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    repo = empty_hub_cache / "models--harmony-agent-test--tiny-mxfp4"
    shutil.copytree(mxfp4_folder, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    started = time.perf_counter()
    model = TransformersModel("harmony-agent-test/tiny-mxfp4", dtype=torch.float32)
    assert time.perf_counter() - started < 30
    assert model.memory_estimate.source == "safetensors headers"
    assert generate(model, list(range(1000, 1010)), max_tokens=2, temperature=0)


def test_bad_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="no model folder at"):
        TransformersModel(str(tmp_path / "no-such-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"has no config\.json"):
        TransformersModel(str(tmp_path / "empty"))


def test_reset_during_a_generation_applies_before_the_next_one(tiny_model):
    model = TransformersModel(tiny_model)
    sampling = SamplingParams(max_tokens=3, temperature=0)
    prompt = list(range(100, 130))

    async def go():
        stream = model.generate(prompt, stop=[], sampling=sampling)
        out = [await stream.__anext__()]
        model.reset_cache()  # the generation above is suspended on this loop: must not deadlock
        out += [t async for t in stream]
        again = [t async for t in model.generate(prompt + out, stop=[], sampling=sampling)]
        return out, again

    out, again = asyncio.run(asyncio.wait_for(go(), 60))
    assert len(out) == 3 and len(again) == 3
    assert model.last_stats.cached_tokens == 0  # the reset was honoured: the whole prompt was prefilled
