"""harmony-agent: an agent loop for gpt-oss, speaking harmony natively.

One import root for everything a user needs::

    from harmony_agent import Agent, PythonTool, BrowserTool, ComputerTool

The public surface is small: :class:`Agent` (configuration) and :class:`Session` (live resources),
:class:`RunResult`, the model backends and :func:`load_model`, the typed ``events``,
:class:`Transcript`, and the tools. Names are imported on first use, so ``import harmony_agent``
stays cheap and loads no tool, model backend or sandbox it does not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the module that defines it.
_EXPORTS = {
    "Agent": "harmony_agent.agent",
    "RunResult": "harmony_agent.results",
    "Session": "harmony_agent.session",
    "SessionBusyError": "harmony_agent.session",
    "SessionClosedError": "harmony_agent.session",
    "Transcript": "harmony_agent.transcript",
    "read_transcript": "harmony_agent.transcript",
    "Model": "harmony_agent.models",
    "ModelError": "harmony_agent.models",
    "OpenAICompatibleModel": "harmony_agent.models",
    "PolicyModel": "harmony_agent.models",
    "SamplingParams": "harmony_agent.models",
    "ScriptedModel": "harmony_agent.models",
    "load_model": "harmony_agent.models",
    "Tool": "harmony_agent.tools",
    "ToolCall": "harmony_agent.tools",
    "ToolError": "harmony_agent.tools",
    "ToolResult": "harmony_agent.tools",
    "FunctionTool": "harmony_agent.tools",
    "function_tool": "harmony_agent.tools",
    "PythonTool": "harmony_agent.tools",
    "BrowserTool": "harmony_agent.tools",
    "ComputerTool": "harmony_agent.tools",
    "MCPTools": "harmony_agent.tools",
}

__all__ = [
    "Agent",
    "BrowserTool",
    "ComputerTool",
    "FunctionTool",
    "MCPTools",
    "Model",
    "ModelError",
    "OpenAICompatibleModel",
    "PolicyModel",
    "PythonTool",
    "RunResult",
    "SamplingParams",
    "ScriptedModel",
    "Session",
    "SessionBusyError",
    "SessionClosedError",
    "Tool",
    "ToolCall",
    "ToolError",
    "ToolResult",
    "Transcript",
    "events",
    "function_tool",
    "load_model",
    "read_transcript",
]

if TYPE_CHECKING:
    from harmony_agent import events
    from harmony_agent.agent import Agent
    from harmony_agent.models import (
        Model,
        ModelError,
        OpenAICompatibleModel,
        PolicyModel,
        SamplingParams,
        ScriptedModel,
        load_model,
    )
    from harmony_agent.results import RunResult
    from harmony_agent.session import Session, SessionBusyError, SessionClosedError
    from harmony_agent.tools import (
        BrowserTool,
        ComputerTool,
        FunctionTool,
        MCPTools,
        PythonTool,
        Tool,
        ToolCall,
        ToolError,
        ToolResult,
        function_tool,
    )
    from harmony_agent.transcript import Transcript, read_transcript


def __getattr__(name: str) -> Any:
    if name == "events":
        return importlib.import_module("harmony_agent.events")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harmony_agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
