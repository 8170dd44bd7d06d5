"""What a new user of the llama.cpp route meets first: windows, wrong files, log noise, threads, memory mapping.

Real GGUF files made with llama.cpp's own converter: the hand-set tiny
gpt-oss (tests/models/conftest.py) and a tiny GPT-2 with the same vocabulary,
which llama.cpp loads happily but which does not speak harmony. A truncated
safetensors shard goes through the CLI as a person would meet it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harmony_agent import Agent
from harmony_agent.models import ModelError, load_model
from helpers import ROOT
from helpers.available import require
from helpers.cli_support import run_cli
from helpers.completions import get_weather

pytest.importorskip("numpy")


@pytest.fixture(scope="module")
def gpt2_gguf(tmp_path_factory) -> Path:
    """A tiny GPT-2 (harmony's tokenizer, random weights) as a GGUF: a valid model of another architecture."""
    require("llamacpp")
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from helpers.tiny_gguf import convert
    from helpers.tiny_gpt_oss import _write_tokenizer

    folder = tmp_path_factory.mktemp("gpt2") / "tiny-gpt2"
    folder.mkdir()
    config = GPT2Config(n_embd=64, n_layer=1, n_head=2, vocab_size=201088, n_positions=512, n_ctx=512)
    GPT2LMHeadModel(config).to(torch.float32).save_pretrained(folder, safe_serialization=True)
    _write_tokenizer(folder)
    return convert(folder, folder.parent / "tiny-gpt2.gguf")


def test_a_prompt_past_n_ctx_ends_with_a_context_window_stop(scripted_gguf):
    # llama.cpp rounds 300 up to 512 but llama-cpp-python's buffer holds 300 tokens: the window is 300.
    model = load_model(f"llamacpp:{scripted_gguf}?n_ctx=300")
    assert model.context_window == 300
    agent = Agent(model, tools=[get_weather], instructions="word " * 320)
    result = agent.run("Weather in Paris?")
    assert result.stop_reason == "context_window", result.error
    assert "fills the context window (300)" in result.error
    # A prompt that fits leaves the model usable: the run gets to its answer.
    short = Agent(model, tools=[get_weather]).run("Weather in Paris?")
    assert short.stop_reason == "final", short.error
    agent.close()


def test_a_gguf_that_is_not_gpt_oss_is_refused_in_one_line(gpt2_gguf):
    with pytest.raises(ModelError) as caught:
        load_model(f"llamacpp:{gpt2_gguf}")
    message = str(caught.value)
    assert "is not a gpt-oss GGUF (its architecture is 'gpt2')" in message and "\n" not in message


def test_llama_cpp_logs_to_logging_not_to_stderr(scripted_gguf, caplog):
    command = [
        sys.executable,
        "-m",
        "harmony_agent.cli",
        "run",
        "Weather in Paris?",
        "--model",
        f"llamacpp:{scripted_gguf}?n_ctx=1024",
        "--tools",
        "examples.weather:get_weather",
        "--yes",
        "--quiet",
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == "", done.stderr
    assert done.stdout.strip() == "It is 21 degrees in Paris."
    # The lines are still there for whoever asks Python's logging for them.
    with caplog.at_level(logging.DEBUG, logger="harmony_agent.models.llamacpp.native"):
        load_model(f"llamacpp:{scripted_gguf}?n_ctx=512")
    assert any("llama_context" in r.getMessage() for r in caplog.records)


def test_threads_default_to_the_physical_cores_and_mmap_is_off_on_the_cpu(scripted_gguf):
    import llama_cpp

    from harmony_agent.models.llamacpp import LlamaCppModel, physical_cores

    siblings = {
        Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text()
        for cpu in os.sched_getaffinity(0)
    }
    assert physical_cores() == len(siblings)
    model = LlamaCppModel(scripted_gguf, n_ctx=256)
    assert model.n_threads == model._llama.n_threads == physical_cores()
    assert model._llama.model_params.load_mode == llama_cpp.LLAMA_LOAD_MODE_NONE  # the file is read, not mapped
    mapped = load_model(f"llamacpp:{scripted_gguf}?n_ctx=256&use_mmap=1&n_threads=1")
    assert mapped._llama.model_params.load_mode == llama_cpp.LLAMA_LOAD_MODE_MMAP and mapped._llama.n_threads == 1


def test_a_truncated_checkpoint_shard_is_one_line_and_exit_2(tmp_path):
    from helpers.tiny_gpt_oss import write_tiny_gpt_oss

    folder = write_tiny_gpt_oss(tmp_path / "tiny")
    shard = folder / "model.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    done = run_cli(
        ["run", "hi", "--model", f"transformers:{folder}"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "model.safetensors is truncated" in lines[0] and "fetch that file again" in lines[0]
    # Without the memory check the same file still fails in one line (safetensors' own error).
    from harmony_agent.models.transformers_model import TransformersModel

    with pytest.raises(ModelError, match="could not load model"):
        TransformersModel(str(folder), check_memory=False)
