"""The GGUF writer of benchmarks/gguf_20b.py: gpt-oss-20b's layout straight from gguf-py, random but sane values."""

from __future__ import annotations

import asyncio

import pytest

np = pytest.importorskip("numpy")

from harmony_agent.models.llamacpp import LlamaCppModel, memory_breakdown
from helpers.random_gguf import GPT_OSS_20B, TINY, header_matches, plan, write_random_gguf


def test_the_20b_plan_has_the_released_files_size_and_mxfp4_experts():
    """12.1 GB like ggml-org's gpt-oss-20b-mxfp4.gguf: MXFP4 experts, Q8_0 matrices (bf16 would be 13.8 GB)."""
    tensors = plan(GPT_OSS_20B)
    assert len(tensors) == 3 + 24 * 19
    assert 12.05e9 < sum(t.nbytes for t in tensors) < 12.15e9
    experts = [t for t in tensors if "_exps.weight" in t.name]
    assert len(experts) == 72 and {t.kind for t in experts} == {"mxfp4"}
    assert {t.shape for t in experts} == {(32, 2880, 2880)}
    attention = next(t for t in tensors if t.name == "blk.0.attn_q.weight")
    assert attention.shape == (64 * 64, 2880) and attention.kind == "q8_0"


def test_a_tiny_file_loads_in_llama_cpp_with_finite_logits_and_is_recognized_whole(scripted_gguf, tmp_path):
    path = write_random_gguf(tmp_path / "tiny.gguf", TINY, tokenizer_source=str(scripted_gguf))
    assert header_matches(path, TINY) and not header_matches(path, GPT_OSS_20B)
    need = memory_breakdown(path)
    assert need.architecture == "gpt-oss" and need.weights == sum(t.nbytes for t in plan(TINY))
    model = LlamaCppModel(str(path), n_ctx=256, use_mmap=False)
    try:
        logits = model.logits([200006, 1428, 200008, 12194, 200007])
        assert model.n_vocab == GPT_OSS_20B["vocab"]
        assert np.isfinite(logits).all() and logits.std() > 0
    finally:
        asyncio.run(model.aclose())
    with open(path, "r+b") as file:  # a file cut short (an interrupted write) is not reused
        file.truncate(path.stat().st_size - 1)
    assert not header_matches(path, TINY)
