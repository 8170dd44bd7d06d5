"""gpt-oss's MXFP4 checkpoints through load_model, and memory checks before loading.

The checkpoints are written here in the released layout (tests/mxfp4_checkpoint.py), since none can
be downloaded: a tiny one with real weights, and full-size 20b/120b ones whose files hold headers only.
"""

from __future__ import annotations

import os
import time

import pytest

from helpers import ROOT

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from harmony_agent.models import (
    ModelError,
    TransformersModel,
    checkpoints,
    load_model,
)
from helpers.cli_support import run_cli
from helpers.mxfp4_checkpoint import (
    EXPERT_MATRICES,
    dequantize,
    layout,
    quantize,
    released_config,
    write_checkpoint,
    write_sparse_layout,
)

CONFIG_120B = dict(num_hidden_layers=36, num_local_experts=128)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    # expert_scale makes the experts' share of the logits large enough to see MXFP4's rounding in it
    return write_checkpoint(tmp_path_factory.mktemp("mxfp4"), expert_scale=10.0)


@pytest.fixture(scope="module")
def loaded32(written):
    return load_model(f"transformers:{written.folder}", dtype=torch.float32)


def reference(written, state):
    from transformers import AutoConfig, GptOssForCausalLM

    model = GptOssForCausalLM(AutoConfig.from_pretrained(written.folder))
    model.load_state_dict(state)
    model.config._attn_implementation = "eager"
    return model.eval()


def logits(model, tokens):
    with torch.inference_mode():
        return model(input_ids=torch.tensor([tokens])).logits[0].float()


PROMPT = list(range(1000, 1064))


def is_expert(name):
    return name.rsplit(".", 1)[-1] in EXPERT_MATRICES


def test_fixture_writes_the_released_layout(written):
    files = sorted(p.name for p in written.folder.iterdir())
    assert files == [
        "config.json",
        "model-00000-of-00002.safetensors",
        "model-00001-of-00002.safetensors",
        "model.safetensors.index.json",
    ]
    tensors = {t.name: (t.dtype, t.shape) for t in checkpoints.folder_tensors(written.folder)}
    assert tensors == layout(written.config)
    assert tensors["model.layers.0.mlp.experts.gate_up_proj_blocks"] == ("U8", (4, 128, 2, 16))
    assert tensors["model.layers.0.mlp.experts.down_proj_scales"] == ("U8", (4, 64, 2))
    assert tensors["model.layers.1.self_attn.sinks"] == ("BF16", (4,))
    # The full-size layout has gpt-oss-20b's parameter count and file size (20.9 B parameters, 13.8 GB).
    full = layout(released_config())
    params = sum(
        2 * torch.tensor(s).prod().item() if n.endswith("_blocks") else torch.tensor(s).prod().item()
        for n, (d, s) in full.items()
        if not n.endswith("_scales")
    )
    assert 20.8e9 < params < 21.0e9
    assert sum(checkpoints.gpt_oss_parameters(released_config())) == params


def test_quantize_rounds_to_the_nearest_code_and_round_trips_codes():
    torch.manual_seed(1)
    weight = torch.randn(2, 64, 96)
    blocks, scales = quantize(weight)
    back = dequantize(blocks, scales)
    step = (
        torch.exp2(scales.float() - 127).repeat_interleave(32, dim=-1).transpose(1, 2)
    )  # one code step of 1.0, per value
    assert ((back - weight).abs() <= step + 1e-7).all()  # never more than the largest half-gap (6 - 4) / 2
    assert torch.equal(dequantize(*quantize(back)), back)  # representable values survive requantizing
    exact = torch.tensor([0.0, 0.5, -1.5, 3.0, -6.0, 4.0, 2.0, 1.0] * 4).reshape(1, 32, 1) * 0.25
    assert torch.equal(dequantize(*quantize(exact)), exact)


def test_load_model_dequantizes_mxfp4_on_the_cpu_to_the_exact_weights(written, loaded32):
    assert isinstance(loaded32, TransformersModel)
    state = loaded32.model.state_dict()
    assert not any(name.endswith(("_blocks", "_scales")) for name in state)
    for name, expected in written.dequantized.items():
        assert state[name].dtype == torch.float32
        assert torch.equal(state[name], expected), name
    estimate = loaded32.memory_estimate
    assert estimate.source == "safetensors headers" and "dequantized" in estimate.how
    assert estimate.weight_bytes == sum(t.numel() * 4 for t in state.values())


def test_logits_match_unquantized_weights_within_mxfp4_rounding(written, loaded32):
    got = logits(loaded32.model, PROMPT)
    # exactly the model the dequantized weights make: the layout (transposes, nibble order, exponent bias) is right
    assert torch.allclose(got, logits(reference(written, written.dequantized), PROMPT), atol=1e-5, rtol=0)
    # and close to the unquantized weights, as close as MXFP4's rounding of the experts allows
    original = logits(reference(written, written.original), PROMPT)
    no_experts = logits(
        reference(written, {k: v * 0 if is_expert(k) else v for k, v in written.original.items()}), PROMPT
    )
    weight_error = max(
        ((written.dequantized[k] - v).norm() / v.norm()).item() for k, v in written.original.items() if is_expert(k)
    )
    logit_error = ((got - original).norm() / (original - no_experts).norm()).item()
    assert 0.05 < weight_error < 0.15  # 3 bits of magnitude a value, one exponent per 32
    assert logit_error < 3 * weight_error, (logit_error, weight_error)
    # a wrong layout is far off: the experts' matrices read transposed within each block row
    swapped = {k: (v.flip(1) if is_expert(k) else v) for k, v in written.dequantized.items()}
    assert (
        (logits(reference(written, swapped), PROMPT) - original).norm() / (original - no_experts).norm()
    ).item() > 3 * logit_error


def test_default_load_is_bfloat16_and_generates(written, loaded32):
    import asyncio

    from harmony_agent.harmony.encoding import stop_tokens
    from harmony_agent.models import SamplingParams

    model = load_model(f"transformers:{written.folder}")
    assert model.model.model.layers[0].mlp.experts.gate_up_proj.dtype == torch.bfloat16
    assert model.memory_estimate.weight_bytes * 2 == loaded32.memory_estimate.weight_bytes
    a, b = logits(model.model, PROMPT), logits(loaded32.model, PROMPT)
    assert ((a - b).norm() / b.norm()).item() < 0.05

    async def go():
        return [
            t
            async for t in model.generate(
                PROMPT, stop=stop_tokens(), sampling=SamplingParams(max_tokens=4, temperature=0)
            )
        ]

    out = asyncio.run(go())
    assert len(out) >= 1 and model.last_stats.prompt_tokens == len(PROMPT)


# --- memory, before loading ---------------------------------------------------


@pytest.fixture(scope="module")
def sparse_20b(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt-oss-20b")
    size = write_sparse_layout(folder, released_config())
    assert 13.7e9 < size < 13.8e9  # the released checkpoint's 13.8 GB, in holes
    return folder


@pytest.fixture(scope="module")
def sparse_120b(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt-oss-120b")
    write_sparse_layout(folder, released_config(**CONFIG_120B))
    return folder


def test_estimates_from_headers_agree_with_the_config(sparse_20b, sparse_120b):
    for folder, config, bf16_gb, packed_gb in (
        (sparse_20b, released_config(), 41.8, 13.8),
        (sparse_120b, released_config(**CONFIG_120B), 233.7, 65.2),
    ):
        tensors = checkpoints.folder_tensors(folder)
        for dtype_bytes, dequantized, gb in ((2, True, bf16_gb), (None, False, packed_gb)):
            from_headers = checkpoints.estimate_memory(config, tensors, dtype_bytes=dtype_bytes, dequantize=dequantized)
            from_config = checkpoints.estimate_memory(config, None, dtype_bytes=dtype_bytes, dequantize=dequantized)
            assert from_headers.weight_bytes == from_config.weight_bytes
            assert abs(from_headers.weight_bytes / 1e9 - gb) < 0.1, (folder, from_headers)
    # the hub id needs no files: the released architecture is known
    known = checkpoints.estimate_memory(
        checkpoints.read_config("openai/gpt-oss-20b", None), None, dtype_bytes=2, dequantize=True
    )
    assert abs(known.weight_bytes / 1e9 - 41.8) < 0.1


def test_loader_refuses_a_checkpoint_that_cannot_fit_before_reading_weights(sparse_120b):
    available, where = checkpoints.available_memory(cuda=False)
    assert available < 200e9, "this test needs a machine with less than 200 GB of RAM"
    started = time.perf_counter()
    with pytest.raises(ModelError) as info:
        load_model(f"transformers:{sparse_120b}")
    assert time.perf_counter() - started < 5
    message = str(info.value)
    assert "\n" not in message
    assert (
        "needs about 245" in message
        and f"{where} has" in message
        and "http://HOST:PORT/v1" in message
        and "llama.cpp" in message
    )


def test_cli_run_refuses_and_doctor_reports(sparse_120b, sparse_20b, written):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = run_cli(["run", "hi", "--model", f"transformers:{sparse_120b}"], cwd=ROOT, env=env)
    assert run.returncode != 0
    assert "needs about 245" in run.stdout + run.stderr and "Traceback" not in run.stdout + run.stderr

    from typer.testing import CliRunner

    from harmony_agent.cli.app import app

    wide = {"COLUMNS": "400"}
    too_big = CliRunner().invoke(app, ["doctor", "--model", str(sparse_120b)], env=wide)
    assert "does NOT fit" in too_big.output and "needs ~245" in too_big.output
    tiny = CliRunner().invoke(app, ["doctor", "--model", str(written.folder)], env=wide)
    line = next(line for line in tiny.output.splitlines() if "model files" in line)
    assert "ok" in line and "fits" in line and "NOT" not in line
