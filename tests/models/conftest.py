"""Fixtures of the model tests: the shared vLLM server."""

from __future__ import annotations

import pytest

from helpers.vllm_server import running_vllm


@pytest.fixture(scope="session")
def vllm_url(tmp_path_factory):
    """The base URL (no ``/v1``) of the one vLLM server of this test session."""
    with running_vllm(tmp_path_factory) as url:
        yield url
