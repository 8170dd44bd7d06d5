"""Shared fixtures: the vocabulary, a tiny random-weight gpt-oss, a weather tool.

Plain helpers live in the ``helpers`` package (tests/helpers/), imported by name.
"""

from __future__ import annotations

import pytest

from harmony_agent.harmony.encoding import get_encoding
from helpers.completions import get_weather, tiny_gpt_oss_config


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
