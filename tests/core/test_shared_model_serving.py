"""One llama.cpp model shared by concurrent requests of ``harmony-agent serve``.

Each request gets a session of its own; the model (one llama.cpp context) is
shared, so generations must take turns under one lock that lives on the
runtime's loop. Before the runtime, the lock was bound to the first request's
session loop: a second request at the same time failed with "bound to a
different event loop", and the one after it never answered.
"""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from helpers import ROOT
from helpers.processes import free_port, listening

pytest.importorskip("llama_cpp")
openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    from helpers.tiny_gguf import make_tiny_gguf

    try:
        return make_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-gpt-oss.gguf")
    except Exception as exc:  # the converter needs llama-cpp-python's source in the cache (scripts/setup.sh)
        pytest.skip(f"cannot make the tiny GGUF here: {exc}")


async def _ask_all(base_url: str, count: int) -> list:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120) as client:

        async def one(number: int):
            return await client.responses.create(model="gpt-oss", input=f"Weather in Paris? ({number})", store=False)

        return await asyncio.gather(*(one(n) for n in range(count)), return_exceptions=True)


def test_serve_with_a_llamacpp_model_answers_eight_concurrent_requests(tiny_gguf):
    port = free_port()
    command = [sys.executable, "-m", "harmony_agent.cli", "serve", "--model", f"llamacpp:{tiny_gguf}?n_ctx=2048"]
    command += ["--port", str(port)]
    env = dict(os.environ)
    with listening(command, port, name="harmony-agent serve", cwd=ROOT, env=env, timeout=120):
        responses = asyncio.run(_ask_all(f"http://127.0.0.1:{port}/v1", 8))
    failed = [r for r in responses if isinstance(r, BaseException)]
    assert not failed, f"{len(failed)} of 8 requests failed: {failed[:2]!r}"
    assert [r.status for r in responses] == ["completed"] * 8
    # The tiny model calls get_weather (which this server does not have), reads the refusal, then answers.
    assert all("21 degrees in Paris" in r.output_text for r in responses), [r.output_text for r in responses]
