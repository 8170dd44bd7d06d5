"""Shared fixtures: the vocabulary, a tiny random-weight gpt-oss, a weather tool.

Plain helpers live in the ``helpers`` package (tests/helpers/), imported by name.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from harmony_agent.harmony.encoding import get_encoding
from helpers.completions import get_weather, tiny_gpt_oss_config

#: Folders whose tests drive real components throughout (Docker, bubblewrap, Chromium, Xvfb, vLLM,
#: llama.cpp, torch models, MCP servers in subprocesses, a wheel built and installed).
SLOW_FOLDERS = ("sandboxes", "tools", "models", "mcp", "packaging")
#: Modules whose every test takes seconds: CLI sessions on a pty, thousands of mutated completions,
#: one Chromium or one llama.cpp model shared by sessions.
SLOW_MODULES = {
    "test_cli_interactive.py",
    "test_battery_completions.py",
    "test_cli_setup.py",
    "test_shared_browser.py",
    "test_shared_model_serving.py",
}
#: Fixtures that bring a real component along.
SLOW_FIXTURES = {"kind", "tiny_model", "sandbox", "box"}
TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` what needs a real component, so ``scripts/test.sh --quick`` can leave it out.

    A test is slow when it lives in a folder of real-component tests, asks for a component with
    ``require(...)``, or takes a fixture that starts one; ``@pytest.mark.slow`` marks any other.
    """
    for item in items:
        folder = Path(item.path).relative_to(TESTS).parts[0]
        function = getattr(item, "function", None)
        source = inspect.getsource(function) if function is not None else ""
        slow_fixture = SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
        if folder in SLOW_FOLDERS or Path(item.path).name in SLOW_MODULES or "require(" in source or slow_fixture:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _encoding():
    # Resolve the vocabulary once, offline, before any test renders.
    return get_encoding()


@pytest.fixture
def weather_tool():
    return get_weather


@pytest.fixture(scope="session")
def tiny_model():
    torch = pytest.importorskip("torch")
    from transformers import GptOssForCausalLM

    torch.manual_seed(0)
    return GptOssForCausalLM(tiny_gpt_oss_config()).eval()
