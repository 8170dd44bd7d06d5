"""gpt-oss checkpoints in the released MXFP4 layout, written here from known weights.

The released gpt-oss-20b/120b checkpoints keep every other tensor in bfloat16
and each expert matrix as two uint8 tensors: ``<proj>_blocks`` of shape
``[experts, rows, cols/32, 16]`` (two 4-bit codes a byte, the low nibble
first; a code is a sign bit and an index into 0, .5, 1, 1.5, 2, 3, 4, 6) and
``<proj>_scales`` of shape ``[experts, rows, cols/32]`` (a power-of-two
exponent biased by 127, one per 32 values). Rows are the matrix's output
features and the 32-value blocks run along its inputs, so ``gate_up_proj``
(``[experts, hidden, 2*intermediate]`` in the model) is stored with
``2*intermediate`` rows. Their ``config.json`` carries
``quantization_config = {"quant_method": "mxfp4", "modules_to_not_convert": [...]}``.

:func:`write_checkpoint` writes a tiny model of that layout (real weights, in
sharded safetensors with an index) in about a second; :func:`write_sparse_layout`
writes a full-size one whose files hold headers and holes, for memory
estimates without 13 GB of disk.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

#: magnitudes of the 4-bit codes 0-7; bit 3 is the sign
FP4_MAGNITUDES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
BLOCK = 32
EXPERT_MATRICES = ("gate_up_proj", "down_proj")


def released_config(**overrides: Any) -> dict[str, Any]:
    """config.json as gpt-oss-20b ships it; overrides change sizes (120b: 36 layers, 128 experts)."""
    config: dict[str, Any] = {
        "architectures": ["GptOssForCausalLM"],
        "attention_bias": True,
        "attention_dropout": 0.0,
        "eos_token_id": 200002,
        "experts_per_token": 4,
        "head_dim": 64,
        "hidden_act": "silu",
        "hidden_size": 2880,
        "initial_context_length": 4096,
        "initializer_range": 0.02,
        "intermediate_size": 2880,
        "max_position_embeddings": 131072,
        "model_type": "gpt_oss",
        "num_attention_heads": 64,
        "num_experts_per_tok": 4,
        "num_hidden_layers": 24,
        "num_key_value_heads": 8,
        "num_local_experts": 32,
        "output_router_logits": False,
        "pad_token_id": 199999,
        "quantization_config": {
            "modules_to_not_convert": [
                "model.layers.*.self_attn",
                "model.layers.*.mlp.router",
                "model.embed_tokens",
                "lm_head",
            ],
            "quant_method": "mxfp4",
        },
        "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "factor": 32.0,
            "original_max_position_embeddings": 4096,
            "rope_type": "yarn",
            "truncate": False,
        },
        "rope_theta": 150000,
        "router_aux_loss_coef": 0.9,
        "sliding_window": 128,
        "swiglu_limit": 7.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.55.0.dev0",
        "use_cache": True,
        "vocab_size": 201088,
    }
    config.update(overrides)
    layers = config["num_hidden_layers"]
    config["layer_types"] = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
    return config


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """The released config at the size of the tests' tiny model (same sliding window of 128)."""
    sizes = dict(
        num_hidden_layers=2,
        hidden_size=64,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_local_experts=4,
        num_experts_per_tok=2,
        experts_per_token=2,
    )
    return released_config(**{**sizes, **overrides})


def layout(config: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every tensor a released-layout checkpoint of ``config`` holds: name -> (safetensors dtype, shape)."""
    hidden, inter, experts = config["hidden_size"], config["intermediate_size"], config["num_local_experts"]
    heads, kv, head_dim, vocab = (
        config["num_attention_heads"],
        config["num_key_value_heads"],
        config["head_dim"],
        config["vocab_size"],
    )
    bf16: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (vocab, hidden),
        "model.norm.weight": (hidden,),
        "lm_head.weight": (vocab, hidden),
    }
    u8: dict[str, tuple[int, ...]] = {}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        bf16.update(
            {
                p + "input_layernorm.weight": (hidden,),
                p + "post_attention_layernorm.weight": (hidden,),
                p + "self_attn.q_proj.weight": (heads * head_dim, hidden),
                p + "self_attn.q_proj.bias": (heads * head_dim,),
                p + "self_attn.k_proj.weight": (kv * head_dim, hidden),
                p + "self_attn.k_proj.bias": (kv * head_dim,),
                p + "self_attn.v_proj.weight": (kv * head_dim, hidden),
                p + "self_attn.v_proj.bias": (kv * head_dim,),
                p + "self_attn.o_proj.weight": (hidden, heads * head_dim),
                p + "self_attn.o_proj.bias": (hidden,),
                p + "self_attn.sinks": (heads,),
                p + "mlp.router.weight": (experts, hidden),
                p + "mlp.router.bias": (experts,),
                p + "mlp.experts.gate_up_proj_bias": (experts, 2 * inter),
                p + "mlp.experts.down_proj_bias": (experts, hidden),
            }
        )
        for proj, rows, cols in (("gate_up_proj", 2 * inter, hidden), ("down_proj", hidden, inter)):
            u8[f"{p}mlp.experts.{proj}_blocks"] = (experts, rows, cols // BLOCK, BLOCK // 2)
            u8[f"{p}mlp.experts.{proj}_scales"] = (experts, rows, cols // BLOCK)
    return {**{n: ("BF16", s) for n, s in bf16.items()}, **{n: ("U8", s) for n, s in u8.items()}}


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An expert matrix ``[experts, inputs, outputs]`` to (blocks, scales), rounding to the nearest code.

    Each block's exponent is the smallest that brings its largest magnitude to 6 or below.
    """
    w = weight.detach().float().transpose(1, 2)  # rows are outputs
    experts, rows, cols = w.shape
    groups = w.reshape(experts, rows, cols // BLOCK, BLOCK)
    amax = groups.abs().amax(-1, keepdim=True)
    exponent = torch.where(amax > 0, torch.ceil(torch.log2(amax / 6.0)), torch.full_like(amax, -127.0)).clamp(-127, 127)
    scaled = groups / torch.exp2(exponent)
    index = (scaled.abs().unsqueeze(-1) - FP4_MAGNITUDES).abs().argmin(-1)
    codes = (index | (scaled < 0).long() << 3).to(torch.uint8).reshape(experts, rows, cols // BLOCK, BLOCK // 2, 2)
    blocks = codes[..., 0] | (codes[..., 1] << 4)
    scales = (exponent.squeeze(-1) + 127).to(torch.uint8)
    return blocks.contiguous(), scales.contiguous()


def dequantize(blocks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(blocks, scales) back to the ``[experts, inputs, outputs]`` float32 matrix they encode."""
    experts, rows, groups, half = blocks.shape
    codes = torch.stack([blocks & 0x0F, blocks >> 4], dim=-1).reshape(experts, rows, groups, half * 2).long()
    values = FP4_MAGNITUDES[codes & 7] * torch.where(codes & 8 > 0, -1.0, 1.0)
    values = values * torch.exp2(scales.float() - 127).unsqueeze(-1)
    return values.reshape(experts, rows, groups * half * 2).transpose(1, 2).contiguous()


@dataclass
class Written:
    """A checkpoint on disk and the weights it was written from."""

    folder: Path
    config: dict[str, Any]
    original: dict[str, torch.Tensor]  # float32: bf16-rounded tensors, expert matrices before quantizing
    dequantized: dict[str, torch.Tensor]  # float32: what a correct loader must produce from the files


def _shards(names: list[str], count: int) -> list[list[str]]:
    layers = sorted({int(n.split(".")[2]) for n in names if n.startswith("model.layers.")})
    per = -(-len(layers) // count) if layers else 1
    shards: list[list[str]] = [[] for _ in range(count)]
    for name in names:
        shards[
            min(int(name.split(".")[2]) // per, count - 1)
            if name.startswith("model.layers.")
            else 0
            if "embed" in name
            else count - 1
        ].append(name)
    return [s for s in shards if s]


def _write_index(folder: Path, shard_names: list[list[str]], sizes: dict[str, int]) -> list[str]:
    files = [f"model-{i:05d}-of-{len(shard_names):05d}.safetensors" for i in range(len(shard_names))]
    weight_map = {name: file for file, names in zip(files, shard_names) for name in names}
    (folder / "model.safetensors.index.json").write_text(
        json.dumps(
            {"metadata": {"total_size": sum(sizes.values())}, "weight_map": dict(sorted(weight_map.items()))}, indent=2
        )
    )
    return files


def write_checkpoint(
    folder: str | Path,
    config: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    expert_scale: float = 1.0,
    shards: int = 2,
) -> Written:
    """Write a released-layout checkpoint of a randomly initialised gpt-oss (seeded) to ``folder``.

    ``expert_scale`` multiplies the expert matrices, so that tests can make the experts matter to the logits.
    """
    from safetensors.torch import save_file
    from transformers import AutoConfig, GptOssForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = config or tiny_config()
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    torch.manual_seed(seed)
    model = GptOssForCausalLM(AutoConfig.from_pretrained(folder))
    expected = layout(config)
    stored: dict[str, torch.Tensor] = {}
    original: dict[str, torch.Tensor] = {}
    dequantized: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        if name.rsplit(".", 1)[-1] in EXPERT_MATRICES:
            weight = value.float() * expert_scale
            blocks, scales = quantize(weight)
            stored[name + "_blocks"], stored[name + "_scales"] = blocks, scales
            original[name], dequantized[name] = weight.to(torch.bfloat16).float(), dequantize(blocks, scales)
        else:
            stored[name] = value.to(torch.bfloat16).contiguous()
            original[name] = dequantized[name] = stored[name].float()
    got = {n: ({torch.bfloat16: "BF16", torch.uint8: "U8"}[t.dtype], tuple(t.shape)) for n, t in stored.items()}
    assert got == expected, "the model's tensors differ from the released layout"
    names = sorted(stored)
    shard_names = _shards(names, shards)
    files = _write_index(folder, shard_names, {n: t.numel() * t.element_size() for n, t in stored.items()})
    for file, group in zip(files, shard_names):
        save_file({n: stored[n] for n in group}, str(folder / file), metadata={"format": "pt"})
    return Written(folder, config, original, dequantized)


def write_sparse_layout(folder: str | Path, config: dict[str, Any], shards: int = 3) -> int:
    """A checkpoint of ``config``'s full size whose files hold real headers and holes for data.

    Returns the bytes the files claim. Nothing can be loaded from it; everything can be estimated.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    tensors = layout(config)
    width = {"BF16": 2, "U8": 1}
    sizes = {n: width[d] * int(torch.tensor(s).prod()) for n, (d, s) in tensors.items()}
    shard_names = _shards(sorted(tensors), shards)
    total = 0
    for file, group in zip(_write_index(folder, shard_names, sizes), shard_names):
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name in group:
            dtype, shape = tensors[name]
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + sizes[name]]}
            offset += sizes[name]
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with open(folder / file, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            f.truncate(8 + len(raw) + offset)
        total += 8 + len(raw) + offset
    return total


def write_random_layout(folder: str | Path, config: dict[str, Any], shards: int = 3, seed: int = 0) -> int:
    """A loadable checkpoint of ``config``'s size with random weights, written a shard at a time.

    For benchmarks at full size: expert matrices are random codes with scales near 2**-7 (values of
    about the released weights' magnitude), other matrices N(0, 0.02), norms 1, biases and sinks 0.
    Returns the bytes written.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    tensors = layout(config)
    generator = torch.Generator().manual_seed(seed)
    width = {"BF16": 2, "U8": 1}
    sizes = {n: width[d] * int(torch.tensor(s).prod()) for n, (d, s) in tensors.items()}
    shard_names = _shards(sorted(tensors), shards)
    for file, group in zip(_write_index(folder, shard_names, sizes), shard_names):
        data: dict[str, torch.Tensor] = {}
        for name in group:
            _dtype, shape = tensors[name]
            if name.endswith("_blocks"):
                data[name] = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
            elif name.endswith("_scales"):
                data[name] = torch.randint(119, 122, shape, dtype=torch.uint8, generator=generator)
            elif name.endswith("norm.weight"):
                data[name] = torch.ones(shape, dtype=torch.bfloat16)
            elif name.endswith(("bias", "sinks")):
                data[name] = torch.zeros(shape, dtype=torch.bfloat16)
            else:
                data[name] = (torch.randn(shape, generator=generator) * 0.02).to(torch.bfloat16)
        save_file(data, str(folder / file), metadata={"format": "pt"})
        del data
    return sum(sizes.values())
