"""``harmony-agent doctor``: what is installed and working, with a fix for each failure."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO


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


#: The GGUF that fits an ordinary 16 GB PC without a GPU, and how to get and run it.
GGUF_ROUTE = "ggml-org/gpt-oss-20b-GGUF"
GGUF_FETCH = f"hf download {GGUF_ROUTE} gpt-oss-20b-mxfp4.gguf (12 GB), then --model llamacpp:{GGUF_ROUTE}"


def is_gguf_spec(model: str | None) -> bool:
    """Whether ``doctor --model`` names a GGUF: ``llamacpp:PATH_OR_REPO`` or a ``PATH.gguf``."""
    return model is not None and (model.startswith("llamacpp:") or model.split("?")[0].endswith(".gguf"))


def _llamacpp(spec: str = f"llamacpp:{GGUF_ROUTE}", *, named: bool = False) -> Check:
    """The in-process llama.cpp backend: installed?, GPU offload?, and the GGUF's memory against this machine's.

    ``spec`` is a ``llamacpp:`` spec or a ``PATH.gguf``; ``named`` says the user
    asked for it (``doctor --model``), so a missing file is a failure rather
    than a pointer to the route.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        from harmony_agent.models.llamacpp import INSTALL_HINT

        return Check("llama.cpp backend", False, "llama-cpp-python not installed", INSTALL_HINT)
    from importlib.metadata import version

    import llama_cpp

    from harmony_agent.models.base import ModelError
    from harmony_agent.models.llamacpp import DEFAULT_N_CTX, machine_memory, parse_spec, resolve_gguf

    gpu = "GPU offload" if llama_cpp.llama_supports_gpu_offload() else "CPU only"
    total, _ = machine_memory()
    detail = f"llama-cpp-python {version('llama-cpp-python')}, {gpu}"
    try:
        target, options = parse_spec(spec.removeprefix("llamacpp:"))
        path = resolve_gguf(target)
    except ModelError as exc:
        if named:
            return Check("llama.cpp backend", False, f"{detail}; {exc}", GGUF_FETCH)
        return Check(
            "llama.cpp backend",
            False,
            f"{detail}; {target} is not cached: gpt-oss-20b in about 13 GB of RAM, the route for a 16 GB PC "
            f"without a GPU (this machine has {total / 2**30:.0f} GiB)",
            GGUF_FETCH,
        )
    return _gguf_memory(path, int(options.get("n_ctx", DEFAULT_N_CTX)), detail, spec)


def _gguf_memory(path: Path, n_ctx: int, detail: str, spec: str) -> Check:
    """Whether a GGUF fits now and on a 16 GB PC, counting llama.cpp's compute buffer and the process."""
    from harmony_agent.models.llamacpp import SIXTEEN_GB_PC, machine_memory, memory_breakdown

    try:
        need = memory_breakdown(path, n_ctx)
    except Exception as exc:  # an unreadable header is reported, never fatal
        return Check("llama.cpp backend", False, f"{detail}; cannot read {path}: {exc}", "download the file again")
    if need.architecture != "gpt-oss":
        return Check(
            "llama.cpp backend",
            False,
            f"{detail}; {path} is a {need.architecture!r} GGUF, not gpt-oss",
            f"use a gpt-oss GGUF: {GGUF_FETCH}",
        )
    total, available = machine_memory()
    fits_now = need.total <= available
    pc = "fits a 16 GB PC" if need.total <= SIXTEEN_GB_PC else "does NOT fit a 16 GB PC"
    summary = (
        f"{path} needs ~{need.total / 2**30:.1f} GiB at n_ctx {n_ctx} ({need.describe()}); "
        f"{available / 2**30:.1f} of {total / 2**30:.0f} GiB free now: {'fits' if fits_now else 'does NOT fit'}; "
        f"{pc} (~{SIXTEEN_GB_PC / 2**30:.1f} GiB left after the system); the file is read, not mapped "
        "(use_mmap=0, the default on the CPU), so it is counted once"
    )
    hint = ""
    if not fits_now:
        smaller = memory_breakdown(path, max(2048, n_ctx // 4))
        base = spec.split("?")[0]
        base = base if base.startswith("llamacpp:") else f"llamacpp:{base}"
        hint = (
            f"close other programs, or a smaller context: {base}?n_ctx={max(2048, n_ctx // 4)} "
            f"(~{smaller.total / 2**30:.1f} GiB); or no local model: --model openai-chat+https://HOST/v1#MODEL"
        )
    return Check("llama.cpp backend", fits_now, f"{detail}; {summary}", hint)


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


def _desktop_image() -> Check:
    """The computer tool's desktop image (Xvfb, a window manager and apps in Docker)."""
    from harmony_agent.sandboxes import SandboxError
    from harmony_agent.sandboxes.docker import docker_client
    from harmony_agent.sandboxes.images.desktop import DESKTOP_IMAGE

    build = "python -m harmony_agent.sandboxes.images.desktop (scripts/setup.sh runs it)"
    try:
        client = docker_client(timeout=3)
    except SandboxError:
        return Check(
            "desktop image", False, "no Docker engine to hold it", "start the engine first (see docker engine)"
        )
    try:
        image = client.images.get(DESKTOP_IMAGE)
    except Exception:
        return Check("desktop image", False, f"{DESKTOP_IMAGE} is missing (the computer tool needs it)", build)
    return Check(
        "desktop image",
        True,
        f"{DESKTOP_IMAGE} ({image.short_id.split(':')[-1]}, {image.attrs.get('Size', 0) / 1e6:.0f} MB)",
    )


def _playwright() -> Check:
    """Playwright, which drives Chromium for the browser tool."""
    if importlib.util.find_spec("playwright") is None:
        return Check("playwright", False, "not installed", "pip install 'harmony-agent[browser]'")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("playwright")
    except PackageNotFoundError:
        found = "?"
    spec = importlib.util.find_spec("playwright")
    driver = Path((spec.origin if spec is not None else None) or "").parent / "driver"
    if not driver.is_dir():
        return Check(
            "playwright",
            False,
            f"playwright {found} has no driver at {driver}",
            "pip install --force-reinstall playwright",
        )
    return Check("playwright", True, f"playwright {found}")


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
    _desktop_image,
    _binary("bubblewrap", ["bwrap"], "apt-get install bubblewrap (the python tool's sandbox when Docker is absent)"),
    _playwright,
    _browser,
    _binary("Xvfb", ["Xvfb"], "apt-get install xvfb xauth openbox"),
    _binary("xdotool", ["xdotool"], "apt-get install xdotool x11-utils wmctrl"),
    _binary("tesseract", ["tesseract"], "apt-get install tesseract-ocr"),
]


def run_checks(model: str | None = None) -> list[Check]:
    """Run every check; ``model`` (a hub id or folder) replaces gpt-oss-20b in the model files check.

    A GGUF (``llamacpp:PATH_OR_REPO[?n_ctx=…]`` or ``PATH.gguf``) is checked by
    the llama.cpp check instead, in place of the Hugging Face cache.
    """
    results = []
    gguf = is_gguf_spec(model)
    for check in CHECKS:
        if gguf and check is _model_files:
            continue
        if gguf and check is _llamacpp:
            check = functools.partial(_llamacpp, str(model), named=True)
        elif model is not None and check is _model_files:
            check = functools.partial(_model_files, model)
        try:
            results.append(check())
        except Exception as exc:  # a check must report, never crash the doctor
            results.append(Check(getattr(check, "__name__", "check").strip("_"), False, f"check failed: {exc}"))
    return results


def report(model: str | None = None, file: IO[str] | None = None) -> int:
    """Print the checks and return the exit code (1 when a required one failed).

    On a terminal a table; piped or redirected, one line a check with nothing
    cut (a table would be squeezed to 80 columns and cut paths short).
    """
    from rich.markup import escape
    from rich.table import Table

    from harmony_agent.cli.console import make_console

    stream = file or sys.stdout
    checks = run_checks(model)
    failed_required = any(c.required and not c.ok for c in checks)

    def status(check: Check) -> str:
        return "ok" if check.ok else ("FAIL" if check.required else "missing")

    if not getattr(stream, "isatty", lambda: False)():
        for check in checks:
            line = f"{check.name}: {status(check)}: {check.detail}"
            if not check.ok and check.hint:
                line += f" | fix: {check.hint}"
            print(line, file=stream)
        return 1 if failed_required else 0
    colours = {"ok": "green", "FAIL": "red", "missing": "yellow"}
    table = Table(title="harmony-agent doctor", show_lines=False)
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        word = status(check)
        hint = "" if check.ok else escape(check.hint)
        table.add_row(check.name, f"[{colours[word]}]{word}[/{colours[word]}]", escape(check.detail), hint)
    make_console(file=stream).print(table)
    return 1 if failed_required else 0
