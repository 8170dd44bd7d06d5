"""A gpt-oss checkpoint in the released MXFP4 layout, random weights, through TransformersModel.

Writes a checkpoint of gpt-oss-20b's (or 120b's) full size and layout with random weights
(tests/helpers/mxfp4_checkpoint.py), then reports, in one run: the memory estimate made before loading,
load time and memory, prefill and decode tokens per second, and the KV-cache reuse ratio of a
10-step tool episode against re-prefilling every step (benchmarks/prefill_reuse.py's episode).

    .venv/bin/python benchmarks/mxfp4_gpt_oss.py --size 20b            # a GPU machine: ~14 GB disk
    .venv/bin/python benchmarks/mxfp4_gpt_oss.py --size 20b --layers 1 # full width, one layer
    .venv/bin/python benchmarks/mxfp4_gpt_oss.py --size tiny           # the tests' size, seconds
    .venv/bin/python benchmarks/mxfp4_gpt_oss.py --quick               # tiny, short prompt: CI's check that it runs

On the CPU the experts are dequantized to bf16 (20b needs ~44 GB); on a GPU with triton and
kernels installed they stay MXFP4.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

import torch
from prefill_reuse import episode

from harmony_agent.models import SamplingParams, checkpoints
from harmony_agent.models.transformers_model import TransformersModel
from helpers.mxfp4_checkpoint import released_config, tiny_config, write_random_layout


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def config_for(size: str, layers: int | None) -> dict:
    config = {
        "tiny": tiny_config,
        "20b": released_config,
        "120b": lambda **kw: released_config(num_hidden_layers=36, num_local_experts=128, **kw),
    }[size]()
    if layers:
        config = {
            **config,
            "num_hidden_layers": layers,
            "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)],
        }
    return config


def timed_generation(model: TransformersModel, prompt: list[int], tokens: int) -> tuple[float, float]:
    """(prefill seconds, decode seconds) of one generation of ``tokens`` tokens from a fresh cache."""
    model.reset_cache()

    async def go() -> None:
        sampling = SamplingParams(max_tokens=tokens, temperature=0)
        async for _ in model.generate(prompt, stop=[], sampling=sampling):
            pass

    started = time.perf_counter()
    asyncio.run(go())
    total = time.perf_counter() - started
    return model.last_stats.prefill_seconds, total - model.last_stats.prefill_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "20b", "120b"], default="20b")
    parser.add_argument("--layers", type=int, help="fewer layers at full width")
    parser.add_argument("--prefill", type=int, default=2048, help="prompt tokens for the prefill figure")
    parser.add_argument("--decode", type=int, default=64, help="tokens for the decode figure")
    parser.add_argument("--folder", help="where to write the checkpoint (default: a temporary folder, removed)")
    parser.add_argument("--quick", action="store_true", help="tiny size, 128-token prefill, 8-token decode")
    args = parser.parse_args()
    if args.quick:
        args.size, args.layers, args.prefill, args.decode = "tiny", None, 128, 8

    config = config_for(args.size, args.layers)
    folder = Path(args.folder or tempfile.mkdtemp(prefix="mxfp4-bench-"))
    try:
        started = time.perf_counter()
        written = write_random_layout(folder, config)
        print(
            f"checkpoint: {args.size}, {config['num_hidden_layers']} layers, {written / 1e9:.2f} GB written "
            f"in {time.perf_counter() - started:.1f} s to {folder}"
        )

        cuda = torch.cuda.is_available()
        location = checkpoints.locate(str(folder))
        estimate = checkpoints.estimate_memory(
            config, checkpoints.folder_tensors(folder), dtype_bytes=None if cuda else 2, dequantize=not cuda
        )
        available, where = checkpoints.available_memory(cuda)
        print(f"estimate before loading: {checkpoints.describe(estimate, available, where)} ({location.source})")

        before = rss()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        model = TransformersModel(str(folder))
        load_s = time.perf_counter() - started
        experts = type(model.model.model.layers[0].mlp.experts).__name__
        print(
            f"load: {load_s:.1f} s; experts as {experts}; RSS +{(rss() - before) / 1e9:.2f} GB"
            + (f"; GPU peak {torch.cuda.max_memory_allocated() / 1e9:.2f} GB" if cuda else "")
        )

        prompt = [(i * 7919) % 199000 + 1000 for i in range(args.prefill)]
        timed_generation(model, prompt[:64], 2)  # warm-up
        prefill_s, _ = timed_generation(model, prompt, 1)
        _, decode_s = timed_generation(model, prompt[:64], args.decode)
        print(f"prefill: {args.prefill} tokens in {prefill_s:.2f} s = {args.prefill / prefill_s:.0f} tok/s")
        print(f"decode: {args.decode - 1} tokens in {decode_s:.2f} s = {(args.decode - 1) / decode_s:.1f} tok/s")

        episode(model.model, True)  # warm-up
        reused, context, reuse_wall, reuse_prefill, _ = episode(model.model, True)
        full, _, full_wall, full_prefill, _ = episode(model.model, False)
        print(
            f"10-step episode, final context {context} tokens: prefilled {reused} with the kept cache, {full} re-prefilling; "
            f"{full / reused:.1f}x tokens, {full_prefill / reuse_prefill:.1f}x prefill time, {full_wall / reuse_wall:.1f}x wall time"
        )
    finally:
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
