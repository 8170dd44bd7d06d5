"""``harmony-agent doctor``: what is installed and working, with a fix for each failure."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""
    required: bool = False


def _vocabulary() -> Check:
    from harmony_agent.harmony.encoding import get_encoding
    from harmony_agent.harmony.vocab import VocabularyError, resolve_vocabulary

    try:
        source = resolve_vocabulary()
        get_encoding()
    except (VocabularyError, Exception) as exc:  # harmony raises its own error types
        return Check(
            "vocabulary",
            False,
            str(exc),
            "pip install quicktok-v1, or set TIKTOKEN_ENCODINGS_BASE to a folder with o200k_base.tiktoken",
            True,
        )
    return Check("vocabulary", True, f"o200k_base from {source.kind} ({source.folder})", required=True)


def _torch() -> Check:
    if importlib.util.find_spec("torch") is None:
        return Check(
            "torch",
            False,
            "not installed",
            "pip install torch==2.13.0 (CPU) or a CUDA build, then pip install 'harmony-agent[local]'",
        )
    import torch

    device = f"CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU only"
    return Check("torch", True, f"{torch.__version__}, {device}")


def _transformers() -> Check:
    if importlib.util.find_spec("transformers") is None:
        return Check("transformers", False, "not installed", "pip install 'harmony-agent[local]'")
    import transformers

    return Check("transformers", True, transformers.__version__)


def _model_files(model_id: str = "openai/gpt-oss-20b") -> Check:
    """Whether a model's files are here, and whether they fit this machine (from metadata, loading nothing)."""
    try:
        from harmony_agent.models import checkpoints
    except ImportError as exc:
        return Check("model files", False, str(exc), "pip install 'harmony-agent[local]'")
    path = os.path.expanduser(model_id)
    folder = path if os.path.isdir(path) else checkpoints.cached_folder(model_id)
    location = checkpoints.Location(str(folder or model_id), None if folder is None else Path(folder), True)
    config = checkpoints.read_config(model_id, location)
    fit = ""
    fits = True
    if config is not None:
        try:
            import torch

            cuda = torch.cuda.is_available()
        except ImportError:
            cuda = False
        mxfp4 = str((config.get("quantization_config") or {}).get("quant_method", "")).lower() == "mxfp4"
        # what TransformersModel would load: bf16 on the CPU, the stored dtype (MXFP4 kept) on a GPU
        estimate = checkpoints.estimate_memory(
            config,
            checkpoints.checkpoint_tensors(model_id, location),
            dtype_bytes=None if cuda else 2,
            dequantize=mxfp4 and not cuda,
        )
        if estimate is not None:
            available, where = checkpoints.available_memory(cuda)
            fits = estimate.total_bytes <= available
            fit = "; " + checkpoints.describe(estimate, available, where)
    if folder is None:
        hint = checkpoints.how_to_get(model_id) if fits else checkpoints.SUGGESTION
        return Check("model files", False, f"{model_id} is not in the Hugging Face cache{fit}", hint)
    if not fits:
        return Check("model files", False, f"{model_id} at {folder}{fit}", checkpoints.SUGGESTION)
    return Check("model files", True, f"{model_id} at {folder}{fit}")


def _llamacpp(repo: str = "ggml-org/gpt-oss-20b-GGUF") -> Check:
    """The in-process llama.cpp backend: installed?, GPU offload?, and the cached GGUF's memory against this machine's."""
    if importlib.util.find_spec("llama_cpp") is None:
        from harmony_agent.models.llamacpp import INSTALL_HINT

        return Check("llama.cpp backend", False, "llama-cpp-python not installed", INSTALL_HINT)
    from importlib.metadata import version

    import llama_cpp

    from harmony_agent.models.base import ModelError
    from harmony_agent.models.llamacpp import machine_memory, memory_needed, resolve_gguf

    gpu = "GPU offload" if llama_cpp.llama_supports_gpu_offload() else "CPU only"
    total, available = machine_memory()
    detail = f"llama-cpp-python {version('llama-cpp-python')}, {gpu}"
    try:
        path = resolve_gguf(repo)
    except ModelError:
        return Check(
            "llama.cpp backend",
            True,
            f"{detail}; {repo} not cached (about 13 GB to run; this machine has {total / 2**30:.0f} GiB)",
        )
    try:
        need = memory_needed(path)
    except Exception as exc:  # an unreadable header is reported, never fatal
        return Check("llama.cpp backend", False, f"{detail}; cannot read {path}: {exc}", f"hf download {repo} again")
    fits = need <= available
    summary = f"{path.name} needs {need / 2**30:.1f} GiB with a 16k context; {available / 2**30:.1f} of {total / 2**30:.0f} GiB free"
    return Check(
        "llama.cpp backend",
        fits,
        f"{detail}; {summary}",
        "" if fits else "close other programs, or lower n_ctx (llamacpp:FILE?n_ctx=4096)",
    )


def _docker() -> Check:
    from harmony_agent.sandboxes import SandboxError
    from harmony_agent.sandboxes.docker import docker_client

    try:
        version = docker_client(timeout=3).version().get("Version", "?")
    except SandboxError as exc:
        return Check(
            "docker engine",
            False,
            str(exc),
            "apt-get install docker.io && dockerd --bridge=none --iptables=false --ip-masq=false &",
        )
    return Check("docker engine", True, f"engine {version}")


def _sandbox_image() -> Check:
    from harmony_agent.sandboxes import SandboxError
    from harmony_agent.sandboxes.docker import docker_client
    from harmony_agent.sandboxes.images import DEFAULT_IMAGE, image_outdated

    try:
        client = docker_client(timeout=3)
    except SandboxError:
        return Check(
            "sandbox image", False, "no Docker engine to hold it", "start the engine first (see docker engine)"
        )
    try:
        image = client.images.get(DEFAULT_IMAGE)
    except Exception:
        return Check(
            "sandbox image",
            False,
            f"{DEFAULT_IMAGE} is missing",
            "harmony-agent sandbox build (or --offline without registry access)",
        )
    outdated = image_outdated(client)
    if outdated:  # e.g. built before the image held IPython: cells would run on the plain kernel
        return Check(
            "sandbox image", False, outdated, "harmony-agent sandbox build (or --offline), or bash scripts/setup.sh"
        )
    return Check(
        "sandbox image",
        True,
        f"{DEFAULT_IMAGE} ({image.short_id.split(':')[-1]}, {image.attrs.get('Size', 0) / 1e6:.0f} MB)",
    )


def _browser() -> Check:
    if importlib.util.find_spec("playwright") is None:
        return Check("browser", False, "playwright not installed", "pip install 'harmony-agent[browser]'")
    from harmony_agent.tools.browser.engine import find_chromium

    found = find_chromium()
    if found is None:
        return Check("browser", False, "no Chromium found", "apt-get install chromium (or playwright install chromium)")
    try:
        importlib.import_module("trafilatura")  # reader mode
    except ImportError as exc:
        return Check(
            "browser",
            False,
            f"Chromium at {found}, but reader mode is broken: {exc}",
            "pip install 'harmony-agent[browser]'",
        )
    return Check("browser", True, f"Chromium at {found}; reader mode (trafilatura) works")


def _binary(name: str, candidates: list[str], hint: str) -> Callable[[], Check]:
    def check() -> Check:
        for candidate in candidates:
            path = candidate if os.path.isabs(candidate) and os.access(candidate, os.X_OK) else shutil.which(candidate)
            if path:
                return Check(name, True, path)
        return Check(name, False, "not found", hint)

    return check


CHECKS: list[Callable[[], Check]] = [
    _vocabulary,
    _torch,
    _transformers,
    _model_files,
    _llamacpp,
    _docker,
    _sandbox_image,
    _binary("bubblewrap", ["bwrap"], "apt-get install bubblewrap (the python tool's sandbox when Docker is absent)"),
    _browser,
    _binary("Xvfb", ["Xvfb"], "apt-get install xvfb xauth openbox"),
    _binary("xdotool", ["xdotool"], "apt-get install xdotool x11-utils wmctrl"),
    _binary("tesseract", ["tesseract"], "apt-get install tesseract-ocr"),
]


def run_checks(model: str | None = None) -> list[Check]:
    """Run every check; ``model`` (a hub id or folder) replaces gpt-oss-20b in the model files check."""
    results = []
    for check in CHECKS:
        if model is not None and check is _model_files:
            check = functools.partial(_model_files, model)
        try:
            results.append(check())
        except Exception as exc:  # a check must report, never crash the doctor
            results.append(Check(getattr(check, "__name__", "check").strip("_"), False, f"check failed: {exc}"))
    return results
