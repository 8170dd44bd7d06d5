"""Fixtures of the model tests: the shared vLLM server, and the hand-set tiny gpt-oss as a GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.available import require
from helpers.vllm_server import running_vllm


@pytest.fixture(scope="session")
def vllm_url(tmp_path_factory):
    """The base URL (no ``/v1``) of the one vLLM server of this test session."""
    with running_vllm(tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="session")
def scripted_gguf(tmp_path_factory) -> Path:
    """The tiny gpt-oss of helpers/tiny_gpt_oss.py converted by llama.cpp's converter, once per session."""
    require("llamacpp")
    from helpers.tiny_gguf import make_tiny_gguf

    return make_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-gpt-oss.gguf")
