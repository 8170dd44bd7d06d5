"""``harmony-agent doctor`` on the model routes: a GGUF named on the command line, the 16 GB question, the fixes.

Run as a person pipes it (a subprocess whose stdout is a pipe), so nothing is
cut at 80 columns. The memory estimate is checked against what llama.cpp
itself reports for its compute buffer when it loads the same file.
"""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
from pathlib import Path

import pytest

from helpers import ROOT
from helpers.cli_support import run_cli

pytest.importorskip("numpy")


def doctor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["doctor", *args], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, timeout=300)


def line_of(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(f"{name}:"))


@pytest.fixture(scope="module")
def deep_gguf(scripted_gguf, tmp_path_factory) -> Path:
    """The tiny GGUF at a path longer than 80 columns, as a piped table used to cut it."""
    folder = tmp_path_factory.mktemp("models") / ("a-long-folder-name-" * 4) / "gguf"
    folder.mkdir(parents=True)
    path = folder / "tiny-gpt-oss-with-a-long-name.gguf"
    path.symlink_to(scripted_gguf)
    assert len(str(path)) > 80
    return path


def in_process(model: str) -> tuple[int, str]:
    """``doctor --model MODEL`` into a pipe-like stream, without starting another Python (torch takes long)."""
    from harmony_agent.cli.doctor import report

    out = io.StringIO()
    return report(model, file=out), out.getvalue()


@pytest.mark.parametrize("form", ["llamacpp:{}", "{}"])
def test_doctor_checks_the_gguf_it_is_given(deep_gguf, form):
    code, output = in_process(form.format(deep_gguf))
    assert code == 0, output
    line = line_of(output, "llama.cpp backend")
    assert line.startswith("llama.cpp backend: ok:")
    assert str(deep_gguf) in line  # whole, though longer than 80 columns
    assert "fits a 16 GB PC" in line and "compute buffer" in line and "process" in line
    assert "Hugging Face cache" not in output and "hf download llamacpp:" not in output


def test_doctor_on_a_missing_gguf_fails_with_a_fix(tmp_path):
    _, output = in_process(f"llamacpp:{tmp_path / 'nothing.gguf'}")
    line = line_of(output, "llama.cpp backend")
    assert "missing" in line and "no GGUF file at" in line and "| fix: hf download ggml-org/gpt-oss-20b-GGUF" in line


def test_doctor_points_at_the_16gb_route_and_names_playwright_and_the_desktop_image(tmp_path):
    done = doctor(HF_HUB_CACHE=str(tmp_path / "empty-hub"), HF_HUB_OFFLINE="1")  # piped, as a script reads it
    line = line_of(done.stdout, "llama.cpp backend")
    assert "route for a 16 GB PC" in line
    assert "| fix: hf download ggml-org/gpt-oss-20b-GGUF gpt-oss-20b-mxfp4.gguf" in line
    assert "--model llamacpp:ggml-org/gpt-oss-20b-GGUF" in line
    # gpt-oss-20b for transformers is not cached either: its fix names the routes without a GPU.
    files = line_of(done.stdout, "model files")
    assert "llamacpp:ggml-org/gpt-oss-20b-GGUF" in files and "openai-chat+https://HOST/v1#MODEL" in files
    assert line_of(done.stdout, "playwright").startswith("playwright: ok: playwright ")
    assert line_of(done.stdout, "desktop image").startswith("desktop image: ok: harmony-agent/desktop:latest")


def test_the_estimate_counts_the_compute_buffer_llama_cpp_reserves(scripted_gguf, caplog):
    from harmony_agent.models.llamacpp import PROCESS_BYTES, LlamaCppModel, memory_breakdown, memory_needed

    for n_ctx in (300, 4096):
        with caplog.at_level(logging.DEBUG, logger="harmony_agent.models.llamacpp.native"):
            caplog.clear()
            model = LlamaCppModel(scripted_gguf, n_ctx=n_ctx)
        reported = next(
            float(m.group(1))
            for r in caplog.records
            if (m := re.search(r"CPU compute buffer size = +([\d.]+) MiB", r.getMessage()))
        )
        need = memory_breakdown(scripted_gguf, n_ctx)
        assert need.compute == pytest.approx(reported * 2**20, rel=0.02), (n_ctx, reported)
        assert need.total == need.weights + need.kv_cache + need.compute + PROCESS_BYTES
        assert need.weights + need.kv_cache == memory_needed(scripted_gguf, n_ctx)
        assert need.architecture == "gpt-oss"
        model._llama.close()


def test_a_context_too_big_for_16gb_says_so_with_a_smaller_one(scripted_gguf):
    from harmony_agent.cli.doctor import _llamacpp

    check = _llamacpp(f"llamacpp:{scripted_gguf}?n_ctx=8000000", named=True)
    assert not check.ok
    assert "does NOT fit a 16 GB PC" in check.detail
    assert f"llamacpp:{scripted_gguf}?n_ctx=2000000" in check.hint
