"""Every benchmark's quick mode runs to the end and prints its table, so no benchmark rots unnoticed.

Each runs as its own process, as a person would run it (``python benchmarks/X.py --quick``); the check is
its exit status and a line of its table. Slow (a few minutes in all): run with ``-m slow`` or by name.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from helpers import ROOT
from helpers.available import require

# benchmark -> (a phrase its table prints, what it needs: sandbox kinds for helpers.available.require, modules)
BENCHMARKS = {
    "batch": ("vs per task", ["bubblewrap", "chromium"], []),
    "boundaries": ("tried 15, contained 15, not contained 0, left behind: nothing", [], []),
    "browser": ("x goto", ["chromium"], []),
    "desktop": ("target observe <= 400 ms", ["desktop"], []),
    # --quick writes a tiny GGUF of the same tensors and keys (megabytes); --full writes 12.1 GB
    "gguf_20b": ("prefix reuse, no tools: turn 2 prefilled", ["bubblewrap"], ["llama_cpp", "transformers"]),
    "hardening": ("control (all allowed)", ["chromium"], []),
    "local_backends": ("llama.cpp re-evaluate / kept cache", [], ["llama_cpp", "transformers"]),
    "loop_overhead": ("re-render ms/step", [], []),
    "miniwob": ("text view:", ["chromium"], ["miniwob"]),
    # --quick writes the tests' tiny checkpoint (kilobytes), not the released layout's gigabytes
    "mxfp4_gpt_oss": ("10-step episode", [], ["transformers"]),
    "prefill_reuse": ("re-prefill / kept cache", [], ["transformers"]),
    "python_sandbox": ("target bubblewrap", ["bubblewrap"], []),
    "screen_reading": ("this merge", ["desktop"], []),
    "server": ("overhead vs in-process", [], ["uvicorn", "openai"]),
    "server_clients": ("stateless, not held", [], ["uvicorn", "openai"]),
}


def test_every_benchmark_is_listed() -> None:
    """A new benchmark without a quick-mode check here fails, so none is left out of CI."""
    assert {path.stem for path in (ROOT / "benchmarks").glob("*.py")} == set(BENCHMARKS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmark_quick_mode(name: str) -> None:
    phrase, kinds, modules = BENCHMARKS[name]
    for kind in kinds:
        require(kind)
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{name} needs the {module} package")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert phrase in done.stdout, done.stdout[-3000:]
