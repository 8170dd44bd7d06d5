"""Model backends behind one token-level interface, and ``load_model``."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from .base import GenerationStats, Model, ModelError, SamplingParams
from .http import OpenAICompatibleModel
from .scripted import PolicyModel, ScriptedModel


def __getattr__(name: str) -> Any:
    # TransformersModel is imported lazily so that the package works without torch.
    if name == "TransformersModel":
        from .transformers_model import TransformersModel

        return TransformersModel
    if name == "LlamaCppModel":  # lazily too: llama-cpp-python is an optional extra
        from .llamacpp import LlamaCppModel

        return LlamaCppModel
    raise AttributeError(name)


def load_model(spec: str | Model, **kwargs: Any) -> Model:
    """Build a model from a spec string.

    * ``scripted:FILE`` - completions from a YAML/JSON file;
    * ``policy:module:function`` - a Python policy callable;
    * ``http://…`` / ``https://…`` - a raw-completions server (vLLM, llama.cpp);
      ``ollama+http://…`` for Ollama's native API;
    * ``transformers:ID_OR_PATH``, or a bare hub id or local path - a local model;
    * ``llamacpp:PATH.gguf`` or ``llamacpp:REPO_ID[:FILE]`` (from the Hugging Face
      cache) - a GGUF run in-process by llama.cpp; options follow ``?``, e.g.
      ``llamacpp:model.gguf?n_ctx=8192&n_threads=4``.
    """
    if isinstance(spec, Model):
        return spec
    spec = spec.strip()
    if spec.startswith("scripted:"):
        return ScriptedModel.from_file(spec[len("scripted:") :])
    if spec.startswith("policy:"):
        target = spec[len("policy:") :]
        module_name, _, attr = target.rpartition(":")
        if not module_name:
            raise ModelError("policy spec must be policy:module:function")
        try:
            policy = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ModelError(f"cannot import policy {target!r}: {exc}") from exc
        return PolicyModel(policy)
    if spec.startswith("ollama+"):
        url = spec[len("ollama+") :]
        base, _, model = url.partition("#")
        return OpenAICompatibleModel(base, model=model or None, flavor="ollama", **kwargs)
    if spec.startswith(("http://", "https://")):
        base, _, model = spec.partition("#")
        return OpenAICompatibleModel(base, model=model or None, api_key=os.environ.get("HARMONY_AGENT_API_KEY"), **kwargs)
    if spec.startswith("llamacpp:") or (spec.endswith(".gguf") and Path(spec).is_file()):
        from .llamacpp import load_llamacpp

        return load_llamacpp(spec.removeprefix("llamacpp:"), **kwargs)
    if spec.startswith("transformers:"):
        spec = spec[len("transformers:") :]
    elif not (Path(spec).exists() or "/" in spec):
        raise ModelError(
            f"unknown model spec {spec!r}: use scripted:FILE, policy:module:fn, http(s)://server, "
            "transformers:ID_OR_PATH, llamacpp:PATH.gguf, or a hub id like openai/gpt-oss-20b"
        )
    from .transformers_model import TransformersModel

    return TransformersModel(spec, **kwargs)


__all__ = [
    "GenerationStats",
    "LlamaCppModel",
    "Model",
    "ModelError",
    "OpenAICompatibleModel",
    "PolicyModel",
    "SamplingParams",
    "ScriptedModel",
    "TransformersModel",
    "load_model",
]
