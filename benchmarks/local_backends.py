"""Local backends side by side: llama.cpp (LlamaCppModel) against transformers (TransformersModel).

One tiny random-weight gpt-oss (the tests' architecture: 2 layers, hidden 64,
4 experts, the full 201k harmony vocabulary), saved in float32 and converted to
GGUF by llama.cpp's own converter, runs the same 10-step tool episode as
benchmarks/prefill_reuse.py through the real Agent loop. The model's choices
are forced to that episode's script, so every run does identical work; every
token still goes through a real forward pass. Four runs, each in a fresh
process so that its peak memory is its own:

* llama.cpp keeping its KV cache across steps (the backend's normal mode);
* llama.cpp re-evaluating the whole prompt every step (the cache reset first);
* transformers keeping its cache, and transformers re-prefilling every step.

It prints prefilled tokens, prefill time, decode tokens per second and peak
memory, then the ratios: llama.cpp's reuse against re-evaluating, and
llama.cpp against transformers.

    .venv/bin/python benchmarks/local_backends.py [--quick]

``--quick`` measures each run's first episode (no warm-up episode) and leaves out transformers re-evaluating,
so CI can check the script still runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

RUNS = [("llamacpp", True), ("llamacpp", False), ("transformers", True), ("transformers", False)]


def forced_llamacpp(path: str, completions: list[list[int]], reuse: bool):
    """A LlamaCppModel that emits the script's tokens (after really evaluating each) instead of sampling."""
    from harmony_agent.models.llamacpp import LlamaCppModel

    class Forced(LlamaCppModel):
        def __init__(self) -> None:
            super().__init__(path, n_ctx=4096)
            self.completions = [list(c) for c in completions]
            self._current: list[int] = []
            self.prefill_seconds = 0.0

        def _sample(self, logits, sampling, rng):
            return self._current.pop(0)

        async def generate(self, prompt, *, stop, sampling):
            if not reuse:
                self.reset_cache()
            self._current = self.completions.pop(0)
            async for token in super().generate(prompt, stop=stop, sampling=sampling):
                yield token
            self.prefill_seconds += self.last_stats.prefill_seconds

    return Forced()


def forced_transformers(checkpoint: str, completions: list[list[int]], reuse: bool):
    import torch
    from prefill_reuse import ForcedModel
    from transformers import GptOssForCausalLM

    model = GptOssForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, attn_implementation="eager").eval()
    return ForcedModel(model, completions, reuse=reuse)


def worker(backend: str, reuse: bool, gguf: str, checkpoint: str, episodes: int = 2) -> dict:
    """One episode in this process; returns its figures."""
    from prefill_reuse import STEPS, fetch_rows, script

    from harmony_agent import Agent

    completions = script()
    make = forced_llamacpp if backend == "llamacpp" else forced_transformers
    baseline_mb = _rss_mb()  # interpreter, torch (imported by the shared episode script) and the agent
    results = []
    for _ in range(episodes):  # the first of two warms up (page cache, allocator); the last is measured
        model = make(gguf if backend == "llamacpp" else checkpoint, completions, reuse)
        agent = Agent(model, tools=[fetch_rows], max_steps=STEPS + 1)
        started = time.perf_counter()
        result = asyncio.run(agent.arun("Read every page of rows."))
        wall = time.perf_counter() - started
        generations = [e for e in result.events if e.type == "generation"]
        generating = sum(g.duration_s for g in generations)
        results.append(
            {
                "answer": result.final_text,
                "prefilled": result.usage.prefilled_tokens,
                "context": generations[-1].prompt_tokens + generations[-1].completion_tokens,
                "prefill_s": model.prefill_seconds,
                "decode_tokens": result.usage.completion_tokens,
                "decode_s": generating - model.prefill_seconds,
                "wall_s": wall,
            }
        )
        asyncio.run(model.aclose())
    figures = results[-1]
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["model_peak_mb"] = figures["peak_rss_mb"] - baseline_mb
    return figures


def _rss_mb() -> float:
    """This process's resident memory now, in MB (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def prepare(folder: Path) -> tuple[Path, Path]:
    from helpers.tiny_gguf import convert, write_random_gpt_oss

    checkpoint = write_random_gpt_oss(folder / "checkpoint")
    return checkpoint, convert(checkpoint, folder / "random-gpt-oss-f32.gguf")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=2, metavar=("BACKEND", "REUSE"))
    parser.add_argument("--gguf")
    parser.add_argument("--checkpoint")
    parser.add_argument("--quick", action="store_true", help="no warm-up episode in each run")
    args = parser.parse_args()
    if args.worker:
        backend, reuse = args.worker
        print(json.dumps(worker(backend, reuse == "1", args.gguf, args.checkpoint, 1 if args.quick else 2)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint, gguf = prepare(Path(scratch))
        figures = {}
        # quick: not transformers re-evaluating (the slowest run, and no ratio below needs it)
        for backend, reuse in RUNS[:3] if args.quick else RUNS:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    backend,
                    "1" if reuse else "0",
                    "--gguf",
                    str(gguf),
                    "--checkpoint",
                    str(checkpoint),
                    *(["--quick"] if args.quick else []),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            figures[backend, reuse] = json.loads(out.strip().splitlines()[-1])
    answers = {f["answer"] for f in figures.values()}
    contexts = {f["context"] for f in figures.values()}
    assert answers == {"All pages read."} and len(contexts) == 1, (answers, contexts)
    print(
        f"episode: 10 steps through the Agent loop, final context {contexts.pop()} tokens; tiny gpt-oss (f32), one process per row"
    )
    print(
        f"{'':34} {'prefilled':>10} {'prefill s':>10} {'decode tok/s':>13} {'episode s':>10} {'peak RSS MB':>12} {'model MB':>9}"
    )
    for (backend, reuse), f in figures.items():
        label = f"{backend} {'kept cache' if reuse else 're-evaluate each step'}"
        print(
            f"{label:34} {f['prefilled']:>10} {f['prefill_s']:>10.3f} {f['decode_tokens'] / f['decode_s']:>13.1f} "
            f"{f['wall_s']:>10.2f} {f['peak_rss_mb']:>12.0f} {f['model_peak_mb']:>9.0f}"
        )
    print(
        "(model MB: peak resident memory above the process's own before the model was built; both processes import torch)"
    )
    lk, lf = figures["llamacpp", True], figures["llamacpp", False]
    tk = figures["transformers", True]
    print(
        f"llama.cpp re-evaluate / kept cache: {lf['prefilled'] / lk['prefilled']:.1f}x tokens, "
        f"{lf['prefill_s'] / lk['prefill_s']:.1f}x prefill time, {lf['wall_s'] / lk['wall_s']:.1f}x episode time"
    )
    print(
        f"transformers / llama.cpp (both kept cache): {tk['prefill_s'] / lk['prefill_s']:.1f}x prefill time, "
        f"{(lk['decode_tokens'] / lk['decode_s']) / (tk['decode_tokens'] / tk['decode_s']):.1f}x decode speed in llama.cpp's favour, "
        f"{tk['wall_s'] / lk['wall_s']:.1f}x episode time, model memory {tk['model_peak_mb'] / lk['model_peak_mb']:.1f}x"
    )


if __name__ == "__main__":
    main()
