"""A local Hugging Face gpt-oss model, with its KV cache kept between steps.

An agent step's prompt is the previous prompt plus what the model generated
plus a tool result, so almost every prompt extends the cached tokens and only
the new tokens need a forward pass. When a prompt diverges (a new user turn
drops old analysis), the cache is cropped to the common prefix when its
sliding-window layers still hold that state, and rebuilt otherwise.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from .base import GenerationStats, Model, ModelError, SamplingParams

DEFAULT_MODEL_ID = "openai/gpt-oss-20b"


def _import_torch() -> Any:
    try:
        import torch
        import transformers  # noqa: F401  (checked here so the error names both)
    except ImportError as exc:
        raise ModelError(
            "the local model backend needs torch and transformers: pip install 'harmony-agent[local]'"
        ) from exc
    return torch


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class TransformersModel(Model):
    """gpt-oss (or any causal LM) run in-process with transformers.

    ``model`` is a hub id (default ``openai/gpt-oss-20b``), a local folder, or
    an already-built ``PreTrainedModel``. ``HF_HUB_OFFLINE=1`` is honoured by
    transformers itself. On a GPU the MXFP4 weights stay quantized where the
    kernels are available; on the CPU they are dequantized to bf16.
    """

    def __init__(self, model: Any = DEFAULT_MODEL_ID, *, device: str | None = None, dtype: Any = None, prefill_chunk: int = 2048) -> None:
        super().__init__()
        self.torch = _import_torch()
        self.prefill_chunk = prefill_chunk
        if isinstance(model, (str, os.PathLike)):
            self.name = str(model)
            self.model = self._load(str(model), device, dtype)
        else:
            self.model = model
            self.name = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        self.model.eval()
        config = self.model.config
        self.context_window = int(getattr(config, "max_position_embeddings", 0) or self.context_window)
        # transformers 5 renamed the forward keyword past_key_values to cache.
        params = inspect.signature(self.model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._cache: Any = None
        self._cached_tokens: list[int] = []
        self._lock = asyncio.Lock()

    def _load(self, model_id: str, device: str | None, dtype: Any) -> Any:
        from transformers import AutoModelForCausalLM

        torch = self.torch
        cuda = torch.cuda.is_available() and device in (None, "cuda", "auto")
        kwargs: dict[str, Any] = {"dtype": dtype or ("auto" if cuda else torch.bfloat16)}
        if cuda:
            kwargs["device_map"] = "auto"
        else:
            # sdpa is refused and flex fails for GptOss on the CPU; MXFP4 needs dequantizing there.
            kwargs["attn_implementation"] = "eager"
            try:
                from transformers import Mxfp4Config

                if _is_mxfp4_checkpoint(model_id):
                    kwargs["quantization_config"] = Mxfp4Config(dequantize=True)
            except ImportError:
                pass
        try:
            model = AutoModelForCausalLM.from_pretrained(model_id, **kwargs)
        except OSError as exc:
            offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
            hint = " (HF_HUB_OFFLINE is set: download it first or pass a local folder)" if offline else ""
            raise ModelError(f"could not load model {model_id!r}{hint}: {exc}") from exc
        if not cuda and device not in (None, "auto"):
            model = model.to(device)
        return model

    def reset_cache(self) -> None:
        self._cache = None
        self._cached_tokens = []

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def _reuse(self, prompt: list[int]) -> int:
        """Make the cache hold a prefix of ``prompt``; return that prefix's length."""
        common = _common_prefix(self._cached_tokens, prompt)
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
            except Exception:  # a sliding-window layer that already forgot that state
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

    async def generate(self, prompt: Sequence[int], *, stop: Sequence[int], sampling: SamplingParams) -> AsyncIterator[int]:
        async with self._lock:
            prompt = list(prompt)
            if not prompt:
                raise ModelError("empty prompt")
            generator = None
            if sampling.seed is not None:
                generator = self.torch.Generator(device="cpu").manual_seed(sampling.seed)
            cached = self._reuse(prompt)
            self.last_stats = GenerationStats(prompt_tokens=len(prompt), prefilled_tokens=len(prompt) - cached, cached_tokens=cached)
            started = time.perf_counter()
            logits = await asyncio.to_thread(self._forward, prompt[cached:])
            self.last_stats.prefill_seconds = time.perf_counter() - started
            stop_set = set(stop)
            limit = sampling.max_tokens
            while True:
                token = self._sample(logits.cpu() if generator is not None else logits, sampling, generator)
                self.last_stats.completion_tokens += 1
                yield token
                if token in stop_set or (limit is not None and self.last_stats.completion_tokens >= limit):
                    return
                logits = await asyncio.to_thread(self._forward, [token])


def _is_mxfp4_checkpoint(model_id: str) -> bool:
    """Whether a checkpoint's config declares MXFP4 quantization (without loading weights)."""
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model_id)
    except Exception:
        return False
    quant = getattr(config, "quantization_config", None) or {}
    method = quant.get("quant_method") if isinstance(quant, dict) else getattr(quant, "quant_method", None)
    return str(method).lower() == "mxfp4"
