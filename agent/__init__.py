"""harmony-agent: an agent loop for gpt-oss, speaking harmony natively.

The public surface is small: :class:`Agent` (configuration) and
:class:`Session` (live resources), :class:`RunResult`, the model backends
and :func:`load_model`, the typed :mod:`~agent.events`, and
:class:`Transcript`.
"""

from . import events
from .agent import Agent
from .loop import RunResult
from .models import (
    Model,
    ModelError,
    OpenAICompatibleModel,
    PolicyModel,
    SamplingParams,
    ScriptedModel,
    load_model,
)
from .session import Session, SessionBusyError, SessionClosedError
from .transcript import Transcript, read_transcript

__all__ = [
    "Agent",
    "Model",
    "ModelError",
    "OpenAICompatibleModel",
    "PolicyModel",
    "RunResult",
    "SamplingParams",
    "ScriptedModel",
    "Session",
    "SessionBusyError",
    "SessionClosedError",
    "Transcript",
    "events",
    "load_model",
    "read_transcript",
]
