"""Write a gpt-oss GGUF of any size with random weights straight from gguf-py, streaming tensor by tensor.

llama.cpp's converter needs a Hugging Face checkpoint first (for gpt-oss-20b
that is 13 GB more on disk and the experts dequantized in memory); this writes
the GGUF directly, in the layout of the released ``gpt-oss-20b-mxfp4.gguf``:
experts in MXFP4, the other matrices in Q8_0, vectors in f32. Q8_0 is what
makes the sizes agree: with these shapes it gives 12.1 GB like the released
file, where bf16 matrices would give 13.8 GB.

The tokenizer metadata (harmony's 201,088 tokens, merges, special ids) is
copied from the tests' tiny GGUF, which llama.cpp's converter made from the
real vocabulary (:mod:`tiny_gguf`), so it is exactly what the converter
writes. Random values stay sane: MXFP4 scales near 2**-7 and Q8_0 scales of
about 0.02 / 74 keep weights near 0.02, so activations neither vanish nor
overflow over 24 layers.

Only one tensor is in memory at a time (the largest, 20b's embedding, is 0.6 GB).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harmony_agent.models.base import ModelError
from harmony_agent.models.gguf_header import read_gguf_header

#: gpt-oss-20b's shape, from its config.json (see mxfp4_checkpoint.released_config).
GPT_OSS_20B: dict[str, int] = {
    "layers": 24,
    "hidden": 2880,
    "heads": 64,
    "kv_heads": 8,
    "head_dim": 64,
    "experts": 32,
    "experts_used": 4,
    "intermediate": 2880,
    "vocab": 201088,
    "sliding_window": 128,
    "context": 131072,
}
#: A shape small enough for CI: the same tensors and keys, seconds to write and run (the vocabulary stays whole).
TINY: dict[str, int] = {
    **GPT_OSS_20B,
    "layers": 2,
    "hidden": 64,
    "heads": 4,
    "kv_heads": 2,
    "experts": 4,
    "experts_used": 2,
    "intermediate": 64,
}
#: Written into general.name, so a file from an older version of this writer is not reused.
WRITER_VERSION = "harmony-agent random gpt-oss v1"
MXFP4_BLOCK, Q8_0_BLOCK = 17, 34  # bytes per 32 values: 1 E8M0 scale + 16 nibble bytes; f16 scale + 32 int8


@dataclass(frozen=True)
class Planned:
    """One tensor: its name, numpy shape (values, not bytes) and how it is stored and filled."""

    name: str
    shape: tuple[int, ...]
    kind: str  # "mxfp4", "q8_0", "ones" (f32), "small" (f32, random near 0)

    @property
    def nbytes(self) -> int:
        values = int(np.prod(self.shape))
        if self.kind == "mxfp4":
            return values // 32 * MXFP4_BLOCK
        if self.kind == "q8_0":
            return values // 32 * Q8_0_BLOCK
        return values * 4

    @property
    def byte_shape(self) -> tuple[int, ...]:
        """The uint8 shape gguf-py takes for a quantized tensor (it converts it back to the value shape)."""
        block = {"mxfp4": MXFP4_BLOCK, "q8_0": Q8_0_BLOCK}.get(self.kind)
        if block is None:
            return self.shape
        return (*self.shape[:-1], self.shape[-1] // 32 * block)


def plan(shape: dict[str, int]) -> list[Planned]:
    """Every tensor of a gpt-oss GGUF of this shape, in the converter's names and order."""
    h, e, ff = shape["hidden"], shape["experts"], shape["intermediate"]
    q, kv = shape["heads"] * shape["head_dim"], shape["kv_heads"] * shape["head_dim"]
    tensors = [Planned("output.weight", (shape["vocab"], h), "q8_0")]
    tensors.append(Planned("token_embd.weight", (shape["vocab"], h), "q8_0"))
    for i in range(shape["layers"]):
        b = f"blk.{i}."
        tensors += [
            Planned(b + "attn_norm.weight", (h,), "ones"),
            Planned(b + "ffn_down_exps.weight", (e, h, ff), "mxfp4"),
            Planned(b + "ffn_down_exps.bias", (e, h), "small"),
            Planned(b + "ffn_gate_exps.weight", (e, ff, h), "mxfp4"),
            Planned(b + "ffn_up_exps.weight", (e, ff, h), "mxfp4"),
            Planned(b + "ffn_gate_exps.bias", (e, ff), "small"),
            Planned(b + "ffn_up_exps.bias", (e, ff), "small"),
            Planned(b + "ffn_gate_inp.bias", (e,), "small"),
            Planned(b + "ffn_gate_inp.weight", (e, h), "small"),
            Planned(b + "post_attention_norm.weight", (h,), "ones"),
            Planned(b + "attn_k.bias", (kv,), "small"),
            Planned(b + "attn_k.weight", (kv, h), "q8_0"),
            Planned(b + "attn_output.bias", (h,), "small"),
            Planned(b + "attn_output.weight", (h, q), "q8_0"),
            Planned(b + "attn_q.bias", (q,), "small"),
            Planned(b + "attn_q.weight", (q, h), "q8_0"),
            Planned(b + "attn_sinks.weight", (shape["heads"],), "small"),
            Planned(b + "attn_v.bias", (kv,), "small"),
            Planned(b + "attn_v.weight", (kv, h), "q8_0"),
        ]
    tensors.append(Planned("output_norm.weight", (h,), "ones"))
    return tensors


def fill(tensor: Planned, rng: np.random.Generator) -> np.ndarray:
    """Random contents that are valid numbers of the tensor's type, in a range the model's math survives."""
    if tensor.kind == "ones":
        return np.ones(tensor.shape, dtype=np.float32)
    if tensor.kind == "small":
        return (rng.standard_normal(tensor.shape, dtype=np.float32) * 0.02).astype(np.float32)
    blocks = tensor.nbytes // (MXFP4_BLOCK if tensor.kind == "mxfp4" else Q8_0_BLOCK)
    data = np.frombuffer(rng.bytes(tensor.nbytes), dtype=np.uint8).reshape(blocks, -1).copy()
    if tensor.kind == "mxfp4":
        # E8M0 exponents 118..121: ggml halves them, so |w| <= 6 * 2**-7 (any 4-bit code is a valid e2m1 value)
        data[:, 0] = rng.integers(118, 122, size=blocks, dtype=np.uint8)
    else:
        data[:, :2] = np.frombuffer(np.float16(0.02 / 74).tobytes(), dtype=np.uint8)  # int8 codes have std ~74
    return data.reshape(tensor.byte_shape)


def architecture_keys(writer: Any, shape: dict[str, int]) -> None:
    """The gpt-oss.* keys the converter writes for gpt-oss-20b (context, YaRN rope, experts, sliding window)."""
    import gguf

    writer.add_name(WRITER_VERSION)
    writer.add_type("model")
    writer.add_block_count(shape["layers"])
    writer.add_context_length(shape["context"])
    writer.add_embedding_length(shape["hidden"])
    writer.add_feed_forward_length(shape["intermediate"])
    writer.add_head_count(shape["heads"])
    writer.add_head_count_kv(shape["kv_heads"])
    writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    writer.add_rope_scaling_factor(32.0)
    writer.add_rope_scaling_orig_ctx_len(4096)
    writer.add_float32("gpt-oss.rope.scaling.yarn_beta_fast", 32.0)
    writer.add_float32("gpt-oss.rope.scaling.yarn_beta_slow", 1.0)
    writer.add_rope_freq_base(150000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_expert_count(shape["experts"])
    writer.add_expert_used_count(shape["experts_used"])
    writer.add_key_length(shape["head_dim"])
    writer.add_value_length(shape["head_dim"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_MXFP4_MOE)
    writer.add_sliding_window(shape["sliding_window"])
    writer.add_expert_feed_forward_length(shape["intermediate"])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def tokenizer_fields(source: str | os.PathLike[str] | None = None) -> Iterator[tuple[str, Any, Any, Any]]:
    """(key, value, type, array item type) of every tokenizer.* key of a converted gpt-oss GGUF.

    Without ``source`` the tests' tiny GGUF is made now (llama.cpp's converter, about half a minute).
    """
    import gguf

    with tempfile.TemporaryDirectory() as scratch:
        if source is None:
            from helpers.tiny_gguf import make_tiny_gguf

            source = make_tiny_gguf(Path(scratch) / "tokenizer-source.gguf")
        for key, (value, vtype, item) in read_gguf_header(source).fields.items():
            if key.startswith("tokenizer."):
                yield key, value, gguf.GGUFValueType(vtype), None if item is None else gguf.GGUFValueType(item)


def header_matches(path: Path, shape: dict[str, int]) -> bool:
    """Whether ``path`` is this writer's GGUF of this shape, whole: same version, tensors and file size."""
    expected = plan(shape)
    try:
        header = read_gguf_header(path)
    except ModelError:  # not a GGUF, or an incomplete one
        return False
    if header.value("general.name") != WRITER_VERSION:
        return False
    if [tensor.name for tensor in header.tensors] != [t.name for t in expected]:
        return False
    size = header.data_start
    for tensor in expected:
        size = -(-(size + tensor.nbytes) // 32) * 32  # gguf-py pads every tensor to 32 bytes
    return path.stat().st_size == size


def write_random_gguf(
    path: str | os.PathLike[str], shape: dict[str, int], *, tokenizer_source: str | None = None, seed: int = 0
) -> Path:
    """Write the GGUF (to ``path``.partial, renamed when whole); returns ``path``."""
    import gguf

    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    tensors = plan(shape)
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(partial), "gpt-oss", use_temp_file=False)
    architecture_keys(writer, shape)
    for key, value, vtype, item in tokenizer_fields(tokenizer_source):
        writer.add_key_value(key, value, vtype, sub_type=item)
    for tensor in tensors:
        quantized = {"mxfp4": gguf.GGMLQuantizationType.MXFP4, "q8_0": gguf.GGMLQuantizationType.Q8_0}
        raw = quantized.get(tensor.kind)
        dtype = np.dtype(np.uint8 if raw is not None else np.float32)
        writer.add_tensor_info(tensor.name, tensor.byte_shape, dtype, tensor.nbytes, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in tensors:
        writer.write_tensor_data(fill(tensor, rng))
    writer.close()
    os.replace(partial, path)
    return path
