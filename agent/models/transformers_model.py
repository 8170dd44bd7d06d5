"""A local Hugging Face gpt-oss model, with its KV cache kept between steps.

An agent step's prompt is the previous prompt plus what the model generated
plus a tool result, so almost every prompt extends the cached tokens and only
the new tokens need a forward pass. When a prompt diverges (a new user turn
drops old analysis), the cache is cropped to the common prefix and only the
rest is prefilled. That crop is exact at any length because the sliding-window
layers keep every position too (the attention mask, built from the config's
``sliding_window``, still limits what they see): a cache that kept only the
last ``sliding_window`` positions of those layers could not be cut back past
them, and every new user turn of a long chat would refill the whole prompt.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from harmony_agent.models import checkpoints
from harmony_agent.models.base import GenerationStats, Model, ModelError, SamplingParams, common_prefix
from harmony_agent.sandboxes.runtime import runtime

DEFAULT_MODEL_ID = "openai/gpt-oss-20b"


def _import_torch() -> Any:
    import importlib.util

    # transformers is only looked for here: importing it takes seconds, which a model that
    # cannot be found or cannot fit should not cost.
    hint = "the local model backend needs torch and transformers: pip install 'harmony-agent[local]'"
    try:
        import torch
    except ImportError as exc:
        raise ModelError(hint) from exc
    if importlib.util.find_spec("transformers") is None:
        raise ModelError(hint)
    return torch


def _safetensor_error() -> type[Exception]:
    """safetensors' own error (a truncated or damaged shard), which is neither an OSError nor a ValueError."""
    try:
        from safetensors import SafetensorError
    except ImportError:
        return OSError
    return SafetensorError


class TransformersModel(Model):
    """gpt-oss (or any causal LM) run in-process with transformers.

    ``model`` is a hub id (default ``openai/gpt-oss-20b``), a local folder, or
    an already-built ``PreTrainedModel``. Before any weight is read, the files
    are located (a missing model with the hub unreachable or ``HF_HUB_OFFLINE``
    set fails in about a second) and, unless ``check_memory=False``, the memory
    the weights need is estimated from the config and safetensors headers and
    a checkpoint that cannot fit is refused with what to use instead. On a GPU
    the MXFP4 experts stay quantized where the kernels are installed; on the
    CPU they are dequantized to ``dtype`` (bfloat16 by default).

    One object may serve several sessions on different threads or event
    loops: generations take turns, each holding the model for its duration.

    ``full_sliding_cache`` (default on) keeps every position in the
    sliding-window layers' KV cache, so a rewind to any common prefix is exact
    and prefills only the new suffix. It costs what the full-attention layers
    cost (for gpt-oss-20b in bfloat16: 12 sliding layers x 8 KV heads x 64 x
    2 x 2 bytes = 24 KiB per token, 3 GiB at 128k tokens, the same again as the
    full layers). Off, those layers keep only their window: less memory, but a
    rewind past the window refills the whole prompt.
    """

    def __init__(
        self,
        model: Any = DEFAULT_MODEL_ID,
        *,
        device: str | None = None,
        dtype: Any = None,
        prefill_chunk: int = 2048,
        check_memory: bool = True,
        full_sliding_cache: bool = True,
    ) -> None:
        super().__init__()
        # Find the files before importing torch (seconds): a model that cannot be had fails at once.
        location = _locate(str(model), dtype, check_memory) if isinstance(model, (str, os.PathLike)) else None
        self.torch = _import_torch()
        self.prefill_chunk = prefill_chunk
        self.full_sliding_cache = full_sliding_cache
        self.memory_estimate: checkpoints.MemoryEstimate | None = None
        if location is not None:
            self.name = str(model)
            self.model = self._load(str(model), location, device, dtype, check_memory)
        else:
            self.model = model
            self.name = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        self.model.eval()
        if self.model.device.type == "cpu":
            _match_omp_thread_limit(self.torch)
        config = self.model.config
        self.context_window = int(getattr(config, "max_position_embeddings", 0) or self.context_window)
        # transformers 5 renamed the forward keyword past_key_values to cache.
        params = inspect.signature(self.model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._cache: Any = None
        self._cached_tokens: list[int] = []
        self._reset_pending = False
        # Generations take turns under an asyncio.Lock made on the process's runtime loop at the first one:
        # every generation runs there (see generate), whichever session, thread or loop asks for it.
        self._lock: asyncio.Lock | None = None

    def _load(
        self, model_id: str, location: checkpoints.Location, device: str | None, dtype: Any, check_memory: bool
    ) -> Any:
        torch = self.torch
        cuda = torch.cuda.is_available() and device in (None, "cuda", "auto")
        load_dtype = dtype or ("auto" if cuda else torch.bfloat16)
        width = None if load_dtype == "auto" else torch.empty((), dtype=load_dtype).element_size()
        config = checkpoints.read_config(model_id, location) or {}
        mxfp4 = str((config.get("quantization_config") or {}).get("quant_method", "")).lower() == "mxfp4"
        # The CPU has no MXFP4 matmul: expand the experts to the load dtype. A GPU keeps them packed
        # when the triton kernels are installed (transformers falls back to dequantizing otherwise).
        dequantize = mxfp4 and not (cuda and _mxfp4_kernels_installed())
        if check_memory:
            tensors = checkpoints.checkpoint_tensors(model_id, location)
            self.memory_estimate = checkpoints.estimate_memory(
                config, tensors, dtype_bytes=width, dequantize=dequantize
            )
            if self.memory_estimate is not None:
                checkpoints.check_fits(model_id, self.memory_estimate, *checkpoints.available_memory(cuda))
        kwargs: dict[str, Any] = {"dtype": load_dtype}
        if location.local_files_only:
            kwargs["local_files_only"] = True
        if cuda:
            kwargs["device_map"] = "auto"
        else:
            # sdpa is refused and flex fails for GptOss on the CPU.
            kwargs["attn_implementation"] = "eager"
        if dequantize:
            from transformers.utils.quantization_config import Mxfp4Config  # not in transformers' type exports

            kwargs["quantization_config"] = Mxfp4Config(dequantize=True)
        from transformers import AutoModelForCausalLM  # seconds to import: only once the files are known good

        try:
            model = AutoModelForCausalLM.from_pretrained(location.source, **kwargs)
        except (OSError, ValueError, _safetensor_error()) as exc:  # a damaged file: one line, not a traceback
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"could not load model {model_id!r}: {first_line}") from exc
        if not cuda and device not in (None, "auto"):
            model = model.to(device)  # type: ignore[arg-type]  # functools.wraps on .to: mypy misbinds self
        return model

    def reset_cache(self) -> None:
        """Forget the KV cache: now when no generation runs, else before the next one starts.

        Never waits for the lock, so calling it while a generation is suspended on this
        thread's event loop cannot deadlock.
        """
        self._reset_pending = True
        if self._lock is None or not self._lock.locked():
            self._drop_cache()

    def _drop_cache(self) -> None:
        self._cache, self._cached_tokens, self._reset_pending = None, [], False

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        if self.full_sliding_cache:
            # Without a config every layer is a full-length DynamicLayer; the model still builds the
            # sliding-window mask for its sliding layers from config.sliding_window, so the result is
            # the same as with the windowed cache, and crop() can go back to any position.
            return DynamicCache()
        return DynamicCache(config=self.model.config)

    def _reuse(self, prompt: list[int]) -> int:
        """Make the cache hold a prefix of ``prompt``; return that prefix's length."""
        common = common_prefix(self._cached_tokens, prompt)
        if common == len(prompt):
            common -= 1  # the last prompt token must be fed to get next-token logits
        if self._cache is None or common <= 0:
            self._cache, self._cached_tokens = self._new_cache(), []
            return 0
        drop = len(self._cached_tokens) - common
        if drop > 0:
            try:
                self._cache.crop(-drop)
                ok = self._cache.get_seq_length() == common
            except Exception:  # a windowed sliding layer (full_sliding_cache off) that already forgot that state
                ok = False
            if not ok:
                self._cache, self._cached_tokens = self._new_cache(), []
                return 0
            self._cached_tokens = self._cached_tokens[:common]
        return common

    def _forward(self, tokens: list[int]) -> Any:
        """Feed tokens through the model with the cache; return the last position's logits."""
        torch = self.torch
        logits = None
        device = self.model.device
        with torch.inference_mode():
            for start in range(0, len(tokens), self.prefill_chunk):
                chunk = tokens[start : start + self.prefill_chunk]
                ids = torch.tensor([chunk], dtype=torch.long, device=device)
                out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{self._cache_kwarg: self._cache})
                logits = out.logits[0, -1].float()
                self._cached_tokens.extend(chunk)
        return logits

    def _sample(self, logits: Any, sampling: SamplingParams, generator: Any) -> int:
        torch = self.torch
        if sampling.temperature == 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / sampling.temperature, dim=-1)
        if sampling.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < sampling.top_p
            sorted_probs = sorted_probs * keep
            choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
            return int(order[choice])
        return int(torch.multinomial(probs, 1, generator=generator))

    async def generate(
        self, prompt: Sequence[int], *, stop: Sequence[int], sampling: SamplingParams
    ) -> AsyncIterator[int]:
        """Generate on the process's runtime, from whichever loop calls, one generation at a time."""
        prompt = list(prompt)
        if not prompt:
            raise ModelError("empty prompt")
        async for token in runtime().relay(lambda: self._generate(prompt, stop, sampling), lockstep=True):
            yield token

    async def _generate(
        self, prompt: list[int], stop: Sequence[int], sampling: SamplingParams
    ) -> AsyncGenerator[int, None]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._reset_pending:
                self._drop_cache()
            generator = None
            if sampling.seed is not None:
                generator = self.torch.Generator(device="cpu").manual_seed(sampling.seed)
            cached = self._reuse(prompt)
            stats = GenerationStats(
                prompt_tokens=len(prompt), prefilled_tokens=len(prompt) - cached, cached_tokens=cached
            )
            self.last_stats = stats
            started = time.perf_counter()
            logits = await asyncio.to_thread(self._forward, prompt[cached:])
            stats.prefill_seconds = time.perf_counter() - started
            stop_set = set(stop)
            limit = sampling.max_tokens
            while True:
                token = self._sample(logits.cpu() if generator is not None else logits, sampling, generator)
                stats.completion_tokens += 1
                yield token
                if token in stop_set or (limit is not None and stats.completion_tokens >= limit):
                    return
                logits = await asyncio.to_thread(self._forward, [token])


def _locate(model_id: str, dtype: Any, check_memory: bool) -> checkpoints.Location:
    """``checkpoints.locate``, adding to its refusal when a released model could not fit here anyway.

    Runs before torch is imported, so a machine without an NVIDIA driver is taken as CPU-only.
    """
    try:
        return checkpoints.locate(model_id)
    except ModelError as exc:
        known = checkpoints.RELEASED.get(model_id)
        if not check_memory or known is None or os.path.exists("/proc/driver/nvidia/version"):
            raise
        estimate = checkpoints.estimate_memory(known, None, dtype_bytes=getattr(dtype, "itemsize", 2), dequantize=True)
        available, where = checkpoints.available_memory(False)
        if estimate is None or estimate.total_bytes <= available:
            raise
        raise ModelError(
            f"{exc} (it would also need about {estimate.total_bytes / checkpoints.GB:.1f} GB of memory "
            f"where {where} has {available / checkpoints.GB:.1f} GB: a server is the way here)"
        ) from None


def _match_omp_thread_limit(torch: Any) -> None:
    """Run torch's CPU ops on no more threads than OpenMP will start.

    With ``OMP_THREAD_LIMIT`` below torch's thread count, oneDNN's bfloat16
    matmuls plan for threads that never run and return uninitialised memory
    (NaN or 3e38 in the logits; seen with torch 2.13 here). Torch cannot use
    the extra threads anyway, so its count is lowered to the limit.
    """
    raw = os.environ.get("OMP_THREAD_LIMIT", "").strip()
    if raw.isdigit() and 0 < int(raw) < torch.get_num_threads():
        torch.set_num_threads(int(raw))


def _mxfp4_kernels_installed() -> bool:
    """Whether transformers can run MXFP4 experts packed (triton and the hub kernels package)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("triton", "kernels"))
