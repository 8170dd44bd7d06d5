"""gpt-oss-20b's full architecture as a GGUF with random weights, through ``harmony-agent chat`` on llama.cpp.

No gpt-oss weights can be downloaded here, so the GGUF is written directly with gguf-py
(tests/helpers/random_gguf.py): the released gpt-oss-20b-mxfp4.gguf's tensors, types and keys (MXFP4
experts, Q8_0 matrices, 12.1 GB), harmony's real tokenizer, random values. Speed and memory do not
depend on what the weights say, so the figures are those of the real model on this machine; the text is
noise, which is why every generation is capped (``--max-tokens``, ``--max-steps 1``).

It runs, each as its own process, as a person would:

1. loading the model alone (``LlamaCppModel(FILE, use_mmap=False)``): load seconds and memory;
2. ``harmony-agent chat --model llamacpp:FILE?use_mmap=0`` without tools, two turns from stdin;
3. the same with ``--tools python,browser --sandbox bubblewrap`` (the sandbox and Chromium are then
   child processes, so the process tree's memory includes them).

Chat rather than ``run``: the second turn shows prefix reuse (how much of the prompt llama.cpp's kept
cache already held). Each run's events come from its ``--transcript``; memory is the process tree's,
polled from /proc (peak sum of PSS, so pages shared between processes count once, and the agent
process's own peak RSS, VmHWM). It ends with doctor's estimate for the same file next to the peak.

    .venv/bin/python benchmarks/gguf_20b.py --full               # writes 12.1 GB (reused if already there)
    .venv/bin/python benchmarks/gguf_20b.py --full --dir /data   # elsewhere; --delete removes it after
    .venv/bin/python benchmarks/gguf_20b.py                      # tiny shape (2 layers, 64 wide), seconds
    .venv/bin/python benchmarks/gguf_20b.py --quick              # the same, shorter: CI's check that it runs

The tiny shape keeps every tensor, key and the whole vocabulary, so the quick mode exercises the same
writer, loader and flows. The machine's load average is printed: other work on the cores slows it all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from harmony_agent.models.llamacpp import memory_breakdown
from helpers.random_gguf import GPT_OSS_20B, TINY, header_matches, plan, write_random_gguf

DEFAULT_DIR = Path("/var/tmp/harmony-agent-bench")
GIB = 2**30
TURNS = ("Write a short poem about memory.", "Now one about disks.")
LOAD_SCRIPT = """
import sys, time
from harmony_agent.models.llamacpp import LlamaCppModel
started = time.perf_counter()
model = LlamaCppModel(sys.argv[1], use_mmap=False)
print(f"{time.perf_counter() - started:.3f}", flush=True)
"""


# -- memory of a process tree ---------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(parent, []).append(int(entry))
    return tree


def _status_kib(pid: int, key: str, path: str = "status") -> int:
    try:
        with open(f"/proc/{pid}/{path}") as file:
            for line in file:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class TreeMemory:
    """Polls a process and its descendants: the peak of their summed PSS, and the root's peak RSS."""

    pid: int
    interval: float = 1.0  # smaps_rollup walks a 13 GB process page by page: polled often, it costs a core
    peak_pss: int = 0
    root_hwm: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            tree, pids, total = _children(), [self.pid], 0
            for pid in pids:
                pids.extend(tree.get(pid, []))
                total += _status_kib(pid, "Pss", "smaps_rollup") * 1024
            self.peak_pss = max(self.peak_pss, total)
            self.root_hwm = max(self.root_hwm, _status_kib(self.pid, "VmHWM") * 1024)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# -- the runs ---------------------------------------------------------------------------------------


@dataclass
class Measured:
    """One process's run: its memory, its generations (from the transcript) and its start time."""

    label: str
    memory: TreeMemory
    wall_s: float
    started: float
    generations: list[dict] = field(default_factory=list)
    load_s: float | None = None


def run_process(label: str, command: list[str], stdin: str = "", timeout: float = 3600) -> tuple[Measured, str]:
    """Run a command with its tree's memory polled; returns the measurement and its stdout."""
    started_wall, started = time.time(), time.perf_counter()
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    memory = TreeMemory(process.pid)
    try:
        out, err = process.communicate(stdin, timeout=timeout)
    finally:
        memory.stop()
    if process.returncode != 0:
        raise RuntimeError(f"{label} failed ({process.returncode}):\n{out[-2000:]}\n{err[-3000:]}")
    return Measured(label, memory, time.perf_counter() - started, started_wall), out


def load_alone(path: Path) -> Measured:
    measured, out = run_process("load", [sys.executable, "-c", LOAD_SCRIPT, str(path)])
    measured.load_s = float(out.strip().splitlines()[-1])
    return measured


def chat(path: Path, label: str, tools: list[str], max_tokens: int, scratch: Path) -> Measured:
    """Two turns of ``harmony-agent chat`` from stdin; the transcript gives each generation's counts and times."""
    transcript = scratch / f"{label}.jsonl"
    command = [sys.executable, "-m", "harmony_agent.cli", "chat", "--model", f"llamacpp:{path}?use_mmap=0"]
    command += ["--max-tokens", str(max_tokens), "--max-steps", "1", "--yes", "--transcript", str(transcript)]
    command += ["--output", str(scratch / "out")]
    if tools:
        command += ["--tools", ",".join(tools), "--sandbox", "bubblewrap"]
    measured, _ = run_process(label, command, stdin="\n".join(TURNS) + "\n")
    events = [json.loads(line) for line in transcript.read_text().splitlines() if line.strip()]
    measured.generations = [e for e in events if e["type"] == "generation"]
    if len(measured.generations) != len(TURNS):
        raise RuntimeError(f"{label}: expected {len(TURNS)} generations, the transcript has {events}")
    return measured


# -- the table --------------------------------------------------------------------------------------


def speeds(generation: dict) -> tuple[float, float]:
    """(prefill, decode) tokens per second of one generation."""
    prefill = generation["prefilled_tokens"] / max(generation["prefill_s"], 1e-9)
    decode_s = generation["duration_s"] - generation["prefill_s"]
    return prefill, (generation["completion_tokens"] - 1) / max(decode_s, 1e-9)


def report(path: Path, load: Measured, runs: list[Measured]) -> None:
    print(f"\nmodel: {path} ({path.stat().st_size / 1e9:.2f} GB), llama.cpp, use_mmap=0, default context")
    print(f"load average at the end (1, 5, 15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"\nload alone: {load.load_s:.1f} s, peak RSS {load.memory.root_hwm / GIB:.2f} GiB")
    head = f"{'run':<14} {'turn':>4} {'prompt':>6} {'prefilled':>9} {'cached':>6} {'prefill t/s':>11} "
    print("\n" + head + f"{'gen':>4} {'decode t/s':>10}")
    for run in runs:
        for turn, generation in enumerate(run.generations, 1):
            prefill, decode = speeds(generation)
            print(
                f"{run.label:<14} {turn:>4} {generation['prompt_tokens']:>6} {generation['prefilled_tokens']:>9} "
                f"{generation['cached_tokens']:>6} {prefill:>11.1f} {generation['completion_tokens']:>4} "
                f"{decode:>10.1f}"
            )
    print(f"\n{'run':<14} {'peak tree PSS GiB':>17} {'agent peak RSS GiB':>18} {'start -> 1st prefill s':>22}")
    for run in runs:
        first = run.generations[0]
        ready = first["time"] - first["duration_s"] - run.started
        print(f"{run.label:<14} {run.memory.peak_pss / GIB:>17.2f} {run.memory.root_hwm / GIB:>18.2f} {ready:>22.1f}")
    for run in runs:
        second = run.generations[1]
        print(
            f"prefix reuse, {run.label}: turn 2 prefilled {second['prefilled_tokens']} of "
            f"{second['prompt_tokens']} tokens ({second['cached_tokens']} from the kept cache)"
        )
    need = memory_breakdown(path)
    peak = max(run.memory.root_hwm for run in runs)
    print(f"\ndoctor's estimate: {need.total / GIB:.2f} GiB ({need.describe()})")
    print(f"measured agent peak RSS: {peak / GIB:.2f} GiB; estimate - measured: {(need.total - peak) / GIB:+.2f} GiB")


def model_file(args: argparse.Namespace) -> Path:
    """The GGUF to run: reused when a whole file of this writer and shape is there, else written now."""
    shape = GPT_OSS_20B if args.full else TINY
    name = "gpt-oss-20b-random.gguf" if args.full else "gpt-oss-tiny-random.gguf"
    path = Path(args.dir) / name
    size = sum(t.nbytes for t in plan(shape))
    if path.is_file() and header_matches(path, shape):
        print(f"reusing {path}")
        return path
    free = os.statvfs(path.parent).f_bavail * os.statvfs(path.parent).f_frsize
    if free < size * 1.05:
        raise SystemExit(f"{path.parent} has {free / 1e9:.1f} GB free; the model needs {size / 1e9:.1f} GB")
    print(f"writing {path} ({size / 1e9:.2f} GB)...", flush=True)
    started = time.perf_counter()
    write_random_gguf(path, shape)
    print(f"wrote it in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="gpt-oss-20b's full size: writes 12.1 GB")
    parser.add_argument("--quick", action="store_true", help="tiny shape, fewer tokens, python only (CI)")
    parser.add_argument("--dir", help=f"where the GGUF is written and reused (default {DEFAULT_DIR}, tiny: a temp dir)")
    parser.add_argument("--delete", action="store_true", help="remove the GGUF at the end")
    parser.add_argument("--max-tokens", type=int, default=None, help="tokens per generation (default 48, quick 8)")
    args = parser.parse_args()
    if args.full and args.quick:
        parser.error("--quick is the tiny shape; leave out --full")
    max_tokens = args.max_tokens or (8 if args.quick else 48)
    tools = ["python"] if args.quick else ["python", "browser"]
    with tempfile.TemporaryDirectory(prefix="gguf-bench-") as scratch:
        if args.dir is None:
            args.dir = str(DEFAULT_DIR) if args.full else scratch
        Path(args.dir).mkdir(parents=True, exist_ok=True)
        path = model_file(args)
        try:
            load = load_alone(path)
            runs = [
                chat(path, "no tools", [], max_tokens, Path(scratch)),
                chat(path, "+".join(tools), tools, max_tokens, Path(scratch)),
            ]
            report(path, load, runs)
        finally:
            if args.delete:
                path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
