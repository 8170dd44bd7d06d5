"""Where a local model's weights are, and whether they fit, decided before loading them.

Loading a checkpoint that does not fit makes the machine swap or gets the
process killed minutes later, and asking an unreachable hub for missing files
costs tens of seconds of retries. Both are known from metadata alone: the
config, the safetensors headers (a few kilobytes at the start of each file)
and the memory free on the device. This module reads that metadata, turns it
into an estimate, and says in one line what to do instead when loading cannot
work.

gpt-oss's released checkpoints keep their expert weights in MXFP4: for each
expert matrix a ``*_blocks`` tensor (uint8, two 4-bit values a byte, 32 values
a block) and a ``*_scales`` tensor (uint8, one power-of-two exponent a block,
biased by 127). Kept quantized (a GPU with the kernels) they cost about half a
byte a weight; dequantized (the CPU) they cost the dtype's full width.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmony_agent.models.base import ModelError

#: bytes per element of the safetensors dtypes a checkpoint may use
DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "BF16": 2,
    "F16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}

#: values a block holds; one scale byte per block
MXFP4_BLOCK = 32

#: working memory beyond the weights: the KV cache, activations, the runtime itself
OVERHEAD_FRACTION = 0.05
OVERHEAD_BYTES = 512 * 2**20

GB = 1e9

#: The routes that need no GPU, named wherever a first run fails for want of one.
NO_GPU_ROUTES = (
    "run the MXFP4 GGUF in-process with llama.cpp (--model llamacpp:ggml-org/gpt-oss-20b-GGUF, about 13 GB of RAM), "
    "or use a hosted gpt-oss with no local model at all (--model openai-chat+https://HOST/v1#MODEL, "
    "key in OPENAI_API_KEY)"
)
SUGGESTION = (
    f"{NO_GPU_ROUTES}; or serve it with vLLM or Ollama and pass --model http://HOST:PORT/v1, or run on a GPU machine"
)

#: the released gpt-oss architectures, so a size can be told before anything is downloaded
RELEASED = {
    "openai/gpt-oss-20b": {"model_type": "gpt_oss", "num_hidden_layers": 24, "num_local_experts": 32},
    "openai/gpt-oss-120b": {"model_type": "gpt_oss", "num_hidden_layers": 36, "num_local_experts": 128},
}
for _config in RELEASED.values():
    _config.update(
        hidden_size=2880,
        intermediate_size=2880,
        num_attention_heads=64,
        num_key_value_heads=8,
        head_dim=64,
        vocab_size=201088,
        tie_word_embeddings=False,
        torch_dtype="bfloat16",
        quantization_config={"quant_method": "mxfp4"},
    )


@dataclass(frozen=True)
class Tensor:
    """One tensor as a safetensors header declares it."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class MemoryEstimate:
    """What loading a checkpoint will take, and where the figure came from."""

    weight_bytes: int
    how: str  # "bfloat16, MXFP4 experts dequantized"
    source: str  # "safetensors headers" or "config"

    @property
    def total_bytes(self) -> int:
        return int(self.weight_bytes * (1 + OVERHEAD_FRACTION) + OVERHEAD_BYTES)


def read_safetensors_header(path: str | os.PathLike) -> list[Tensor]:
    """The tensors one ``.safetensors`` file declares, reading only its header."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ModelError(f"{path} is not a safetensors file (too short)")
        (size,) = struct.unpack("<Q", raw)
        if size > 100 * 2**20:
            raise ModelError(f"{path} is not a safetensors file (header of {size} bytes)")
        try:
            header = json.loads(f.read(size))
        except ValueError as exc:
            raise ModelError(f"{path} has an unreadable safetensors header: {exc}") from None
        if not isinstance(header, dict):
            raise ModelError(f"{path} has an unreadable safetensors header: not a JSON object")
        _check_complete(path, header, 8 + size, os.fstat(f.fileno()).st_size)
    return [
        Tensor(name, info["dtype"], tuple(info["shape"])) for name, info in header.items() if name != "__metadata__"
    ]


def _check_complete(path: str | os.PathLike, header: dict[str, Any], start: int, size: int) -> None:
    """Refuse a shard whose data ends before its header says (an interrupted download or copy)."""
    ends = [
        info["data_offsets"][1]
        for name, info in header.items()
        if name != "__metadata__" and isinstance(info, dict) and isinstance(info.get("data_offsets"), list)
    ]
    needed = start + max((int(end) for end in ends), default=0)
    if size < needed:
        raise ModelError(
            f"{path} is truncated: it holds {size} bytes but its header describes {needed} "
            "(an interrupted download or copy?); fetch that file again"
        )


def folder_tensors(folder: str | os.PathLike) -> list[Tensor] | None:
    """Every tensor of the checkpoint in ``folder`` (None when it has no complete set of safetensors files)."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError) as exc:
            raise ModelError(f"{index} is not a safetensors index: {exc}") from None
    else:
        files = sorted(p.name for p in folder.glob("*.safetensors"))
    if not files or not all((folder / name).is_file() for name in files):
        return None
    return [t for name in files for t in read_safetensors_header(folder / name)]


def _quant_method(config: dict[str, Any]) -> str:
    quant = config.get("quantization_config") or {}
    return str(quant.get("quant_method", "")).lower()


def _loaded_bytes(tensor: Tensor, dtype_bytes: int | None, dequantize: bool) -> int:
    """Bytes a tensor takes once loaded: MXFP4 pairs expand to two values a byte when dequantized."""
    stored = DTYPE_BYTES.get(tensor.dtype, 2)
    if tensor.name.endswith("_blocks") and tensor.dtype == "U8":
        return tensor.numel * 2 * (dtype_bytes or 2) if dequantize else tensor.numel
    if tensor.name.endswith("_scales") and tensor.dtype == "U8":
        return 0 if dequantize else tensor.numel
    return tensor.numel * (dtype_bytes or stored)


def gpt_oss_parameters(config: dict[str, Any]) -> tuple[int, int]:
    """(expert weights, every other parameter) of a gpt-oss config, counted from its shapes."""
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    experts, layers = config["num_local_experts"], config["num_hidden_layers"]
    heads, kv, head_dim = (
        config["num_attention_heads"],
        config["num_key_value_heads"],
        config.get("head_dim") or hidden // config["num_attention_heads"],
    )
    vocab = config["vocab_size"]
    q_and_o = 2 * hidden * heads * head_dim + heads * head_dim + hidden  # weights, q's bias, o's bias
    k_and_v = 2 * (hidden * kv * head_dim + kv * head_dim)
    attention = q_and_o + k_and_v + heads  # + one attention sink a head
    router = experts * hidden + experts
    expert_weights = experts * (hidden * 2 * inter + inter * hidden)
    expert_biases = experts * (2 * inter + hidden)
    per_layer_other = attention + router + expert_biases + 2 * hidden
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings") else 2)
    return layers * expert_weights, layers * per_layer_other + embeddings + hidden


def estimate_memory(
    config: dict[str, Any], tensors: list[Tensor] | None, *, dtype_bytes: int | None, dequantize: bool
) -> MemoryEstimate | None:
    """Memory the weights need once loaded, from the headers when present, else from a gpt-oss config.

    ``dtype_bytes`` is the width the loader converts floating weights to (None: as stored);
    ``dequantize`` says whether MXFP4 experts are expanded to that width or kept packed.
    """
    mxfp4 = _quant_method(config) == "mxfp4"
    width = (
        "stored dtypes"
        if dtype_bytes is None
        else {1: "8-bit", 2: "bfloat16", 4: "float32"}.get(dtype_bytes, f"{dtype_bytes}-byte")
    )
    how = width + (
        ", MXFP4 experts dequantized" if mxfp4 and dequantize else ", MXFP4 experts kept quantized" if mxfp4 else ""
    )
    if tensors:
        return MemoryEstimate(
            sum(_loaded_bytes(t, dtype_bytes, dequantize) for t in tensors), how, "safetensors headers"
        )
    if config.get("model_type") != "gpt_oss":
        return None
    experts, other = gpt_oss_parameters(config)
    width_bytes = dtype_bytes or 2
    expert_bytes = experts * width_bytes if (dequantize or not mxfp4) else experts // 2 + experts // MXFP4_BLOCK
    return MemoryEstimate(expert_bytes + other * width_bytes, how, "config")


def available_memory(cuda: bool) -> tuple[int, str]:
    """Bytes free where the weights will live, and a name for that place.

    On a GPU, ``device_map="auto"`` spills what the GPUs cannot hold into RAM,
    so both count; on the CPU, RAM available now (within a cgroup's limit).
    """
    ram = _ram_available()
    if not cuda:
        return ram, "this CPU-only machine"
    import torch

    gpu = sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
    return gpu + ram, "the GPUs and RAM of this machine"


def _ram_available() -> int:
    try:
        import psutil

        free = int(psutil.virtual_memory().available)
    except ImportError:
        free = _meminfo_available()
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            free = min(free, max(int(limit) - usage, 0))
        break
    return free


def _meminfo_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(name: str, estimate: MemoryEstimate, available: int, where: str) -> None:
    """Refuse, in one line with what to do instead, a checkpoint that cannot fit."""
    if estimate.total_bytes <= available:
        return
    raise ModelError(
        f"{name} needs about {estimate.total_bytes / GB:.1f} GB of memory ({estimate.how}; "
        f"{estimate.weight_bytes / GB:.1f} GB of weights, from its {estimate.source}) but {where} has "
        f"{available / GB:.1f} GB available: {SUGGESTION}"
    )


def describe(estimate: MemoryEstimate, available: int, where: str) -> str:
    """One line for ``doctor``: the need, what is free, and whether it fits."""
    verdict = "fits" if estimate.total_bytes <= available else "does NOT fit"
    return (
        f"needs ~{estimate.total_bytes / GB:.1f} GB ({estimate.how}); {where} has "
        f"{available / GB:.1f} GB available: {verdict}"
    )


# --- where the files are -------------------------------------------------

#: seconds to wait for the hub before calling it unreachable
HUB_TIMEOUT = 2.0


@dataclass(frozen=True)
class Location:
    """Where ``from_pretrained`` will read a model from."""

    source: str  # what to pass to from_pretrained: a folder or a hub id
    folder: Path | None  # the files on this machine, when there are any
    local_files_only: bool  # the hub must not be asked (offline, or unreachable)


def how_to_get(model_id: str) -> str:
    return (
        f"download it where the hub is reachable (hf download {model_id}) and copy the Hugging Face cache here, "
        "pass a local folder (transformers:PATH), or use a server: --model http://HOST:PORT/v1; with no GPU, "
        f"{NO_GPU_ROUTES}"
    )


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE asks that the hub not be contacted."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def hub_problem(repo_id: str, timeout: float = HUB_TIMEOUT) -> str | None:
    """Why the hub cannot be reached in ``timeout`` seconds, or None when it answers at all.

    One short request instead of the download machinery's retries, which take
    about a minute to give up on a network that drops packets.
    """
    import httpx
    from huggingface_hub import constants

    url = f"{constants.ENDPOINT.rstrip('/')}/api/models/{repo_id}"
    try:
        httpx.head(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return f"{constants.ENDPOINT}: {type(exc).__name__}{': ' + str(exc) if str(exc) else ''}"
    return None


def cached_folder(repo_id: str) -> Path | None:
    """The cached snapshot folder of a hub model, when its config was downloaded before."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # not a valid repo id, no hub library: nothing cached
        return None
    return Path(found).parent if isinstance(found, str) else None


def _looks_like_path(model_id: str) -> bool:
    return model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1 or (os.sep != "/" and os.sep in model_id)


def locate(model_id: str) -> Location:
    """Find a model's files, failing at once (one line) when it can be neither found nor downloaded."""
    path = Path(model_id).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{model_id} has no config.json: not a Hugging Face model folder")
        return Location(str(path), path, True)
    if _looks_like_path(model_id):
        raise ModelError(f"no model folder at {model_id} (a hub id looks like openai/gpt-oss-20b)")
    cached = cached_folder(model_id)
    if hub_offline():
        if cached is None:
            raise ModelError(
                f"{model_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: {how_to_get(model_id)}"
            )
        return Location(model_id, cached, True)
    problem = hub_problem(model_id)
    if problem is not None:
        if cached is None:
            raise ModelError(
                f"{model_id} is not in the local Hugging Face cache and the hub cannot be reached ({problem}): {how_to_get(model_id)}"
            )
        return Location(model_id, cached, True)
    return Location(model_id, cached, False)


def read_config(model_id: str, location: Location | None) -> dict[str, Any] | None:
    """The model's config.json as a dict: from its files, the hub, or the released table."""
    if location is not None and location.folder is not None and (location.folder / "config.json").is_file():
        try:
            return json.loads((location.folder / "config.json").read_text())
        except ValueError as exc:
            raise ModelError(f"{location.folder / 'config.json'} is not valid JSON: {exc}") from None
    if location is not None and not location.local_files_only:
        try:
            from huggingface_hub import hf_hub_download

            return json.loads(Path(hf_hub_download(model_id, "config.json")).read_text())
        except Exception:
            pass
    return RELEASED.get(model_id)


def checkpoint_tensors(model_id: str, location: Location | None) -> list[Tensor] | None:
    """The checkpoint's tensors from the local headers, or from the hub's header service."""
    if location is not None and location.folder is not None:
        found = folder_tensors(location.folder)
        if found is not None:
            return found
    if location is None or location.local_files_only:
        return None
    try:
        from huggingface_hub import HfApi

        meta = HfApi().get_safetensors_metadata(model_id, timeout=10)
    except Exception:  # no safetensors on the hub, a gated repo: estimate from the config instead
        return None
    return [
        Tensor(name, info.dtype, tuple(info.shape))
        for f in meta.files_metadata.values()
        for name, info in f.tensors.items()
    ]
