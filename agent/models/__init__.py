"""Model backends behind one token-level interface, and ``load_model``."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from harmony_agent.models.base import GenerationStats, Model, ModelError, Retry, SamplingParams
from harmony_agent.models.http import OpenAICompatibleModel
from harmony_agent.models.openai_api import ServerRenderedModel
from harmony_agent.models.scripted import PolicyModel, ScriptedModel


def __getattr__(name: str) -> Any:
    # TransformersModel is imported lazily so that the package works without torch.
    if name == "TransformersModel":
        from harmony_agent.models.transformers_model import TransformersModel

        return TransformersModel
    if name == "LlamaCppModel":  # lazily too: llama-cpp-python is an optional extra
        from harmony_agent.models.llamacpp import LlamaCppModel

        return LlamaCppModel
    raise AttributeError(name)


#: Where Ollama listens unless told otherwise.
OLLAMA_DEFAULT = "http://127.0.0.1:11434"
#: Short names for the gpt-oss models: Ollama's tags (served locally), and the hub ids.
SHORTCUTS = {
    "gpt-oss:20b": f"ollama+{OLLAMA_DEFAULT}#gpt-oss:20b",
    "gpt-oss:120b": f"ollama+{OLLAMA_DEFAULT}#gpt-oss:120b",
    "20b": "openai/gpt-oss-20b",
    "120b": "openai/gpt-oss-120b",
}
#: Every form of spec load_model accepts, for error messages and help.
SPEC_FORMS = (
    "gpt-oss:20b or gpt-oss:120b (Ollama at 127.0.0.1:11434), 20b or 120b (openai/gpt-oss-*), "
    "http(s)://server[#model], ollama+http://server#model, openai-chat+https://host/v1#model or "
    "openai-responses+https://host/v1#model (servers that render harmony themselves; key from OPENAI_API_KEY), transformers:ID_OR_PATH, a hub id "
    "(openai/gpt-oss-20b) or local folder, llamacpp:PATH.gguf or llamacpp:REPO_ID[:FILE], scripted:FILE, "
    "or policy:module:function"
)


def load_model(spec: str | Model, **kwargs: Any) -> Model:
    """Build a model from a spec string.

    * ``scripted:FILE`` - completions from a YAML/JSON file;
    * ``policy:module:function`` - a Python policy callable;
    * ``http://…`` / ``https://…`` - a raw-completions server (vLLM, llama.cpp);
      ``ollama+http://…`` for Ollama's native API;
    * ``openai-chat+https://HOST/v1#MODEL`` / ``openai-responses+https://HOST/v1#MODEL`` -
      a server that renders harmony itself (hosted gpt-oss; vLLM's, Ollama's or LM
      Studio's chat endpoints), through Chat Completions or the Responses API; the
      API key comes from ``HARMONY_AGENT_API_KEY`` or ``OPENAI_API_KEY``;
    * ``transformers:ID_OR_PATH``, or a bare hub id or local path - a local model;
    * the shortcuts in :data:`SHORTCUTS`: ``gpt-oss:20b`` / ``gpt-oss:120b`` (Ollama
      at its default local address), ``20b`` / ``120b`` (the hub ids).
    * ``llamacpp:PATH.gguf`` or ``llamacpp:REPO_ID[:FILE]`` (from the Hugging Face
      cache) - a GGUF run in-process by llama.cpp; options follow ``?``, e.g.
      ``llamacpp:model.gguf?n_ctx=8192&n_threads=4``.
    """
    if isinstance(spec, Model):
        return spec
    spec = spec.strip()
    spec = SHORTCUTS.get(spec.lower(), spec)
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
    if spec.startswith(("openai-chat+", "openai-responses+")):
        from harmony_agent.models.openai_api import ServerRenderedModel, api_key_from_environment

        api, _, url = spec.partition("+")
        base, _, model = url.partition("#")
        if not base.startswith(("http://", "https://")):
            raise ModelError(f"{api}+ needs a server address: {api}+https://HOST/v1#MODEL")
        key = api_key_from_environment(dict(os.environ))
        return ServerRenderedModel(base, api=api.removeprefix("openai-"), model=model or None, api_key=key, **kwargs)
    if spec.startswith("ollama+"):
        url = spec[len("ollama+") :]
        base, _, model = url.partition("#")
        return OpenAICompatibleModel(base, model=model or None, flavor="ollama", **kwargs)
    if spec.startswith(("http://", "https://")):
        base, _, model = spec.partition("#")
        return OpenAICompatibleModel(
            base, model=model or None, api_key=os.environ.get("HARMONY_AGENT_API_KEY"), **kwargs
        )
    if spec.startswith("llamacpp:") or (spec.endswith(".gguf") and Path(spec).is_file()):
        from harmony_agent.models.llamacpp import load_llamacpp

        return load_llamacpp(spec.removeprefix("llamacpp:"), **kwargs)
    if spec.startswith("transformers:"):
        spec = spec[len("transformers:") :]
    elif not (Path(spec).exists() or "/" in spec):
        raise ModelError(f"unknown model spec {spec!r}: use {SPEC_FORMS}")
    from harmony_agent.models.transformers_model import TransformersModel

    return TransformersModel(spec, **kwargs)


__all__ = [
    "SHORTCUTS",
    "GenerationStats",
    "LlamaCppModel",
    "Model",
    "ModelError",
    "OpenAICompatibleModel",
    "PolicyModel",
    "Retry",
    "SamplingParams",
    "ScriptedModel",
    "ServerRenderedModel",
    "TransformersModel",
    "load_model",
]
