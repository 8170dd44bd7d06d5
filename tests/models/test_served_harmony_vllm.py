"""The server-rendered backend against vLLM's own Chat Completions and Responses endpoints.

vLLM (tests/helpers/vllm_server.py, shared with test_vllm.py) serves the tiny
hand-set gpt-oss with gpt-oss's tool parser. Here vLLM renders the harmony
prompt itself and parses the model's output into ``tool_calls`` or
``function_call`` items; the agent sends structured messages and tools and
renders what comes back into harmony tokens. The tiny model writes a
``get_weather`` call until a ``<|call|>`` is in its prompt, then the answer;
so a finished run proves that vLLM saw our tools, returned the call, and got
the call and its result back in the form it renders into the next prompt.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harmony_agent import Agent
from harmony_agent.harmony.encoding import CALL, RETURN
from harmony_agent.models import load_model
from helpers import ROOT
from helpers.completions import get_weather
from helpers.vllm_server import SERVED_NAME

ANSWER = "It is 21 degrees in Paris."


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_agent_runs_a_tool_call_and_a_final_answer(vllm_url, api, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "unused-by-vllm")
    # The default budget (16384 at medium reasoning) is asked within vLLM's 4096-token window: no HTTP 400.
    agent = Agent(load_model(f"openai-{api}+{vllm_url}/v1#{SERVED_NAME}"), tools=[get_weather])
    result = agent.run("What is the weather in Paris?")
    agent.close()
    assert result.stop_reason == "final", result.error
    assert result.final_text == ANSWER
    generations = [e for e in result.events if e.type == "generation"]
    assert [g.stop_token for g in generations] == [CALL, RETURN]
    call = next(e for e in result.events if e.type == "tool_call")
    assert call.recipient == "functions.get_weather" and json.loads(call.content) == {"city": "Paris"}
    tool = next(e for e in result.events if e.type == "tool_result")
    assert not tool.is_error and '"temperature": 21' in tool.content
    # vLLM's own prompt count (its rendering, not ours) is what usage reports.
    assert all(g.prefilled_tokens + g.cached_tokens > 0 for g in generations)


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_cli_runs_against_the_servers_endpoint(vllm_url, api, tmp_path):
    command = [
        sys.executable,
        "-m",
        "harmony_agent.cli",
        "run",
        "What is the weather in Paris?",
        "--model",
        f"openai-{api}+{vllm_url}/v1#{SERVED_NAME}",
        "--tools",
        "examples.weather:get_weather",
        "--yes",
        "--json=events",
    ]
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "c"),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds.count("tool_call") == 1 and kinds[-1] == "run_end"
    assert events[-1]["stop_reason"] == "final" and events[-1]["final_text"] == ANSWER
    result = next(e for e in events if e["type"] == "tool_result")
    assert '"temperature": 18' in result["content"]  # examples/weather.py's Paris
