"""Typed events: the one record of a run.

The loop yields these; the CLI prints them, transcripts store them as JSON
lines, and ``replay`` reads them back. Nothing else describes a run, so what
you see live, what is saved and what is replayed cannot disagree.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class Usage(BaseModel):
    """Token counts of a run, summed over its generations."""

    prompt_tokens: int = 0
    prefilled_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    generations: int = 0


class Source(BaseModel):
    """A page an answer cites: the browser cursor, its URL (None if this conversation never showed it), the lines."""

    model_config = ConfigDict(frozen=True)
    cursor: int
    url: str | None
    lines: str


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)
    time: float = Field(default_factory=time.time)
    step: int = 0


class RunStartEvent(_Event):
    type: Literal["run_start"] = "run_start"
    task: str
    model: str
    tools: list[str] = []
    reasoning: str = "medium"
    #: The session's output folder: the host files a turn names (tool images, ``RunEndEvent.files``) are inside it.
    output_dir: str | None = None


class GenerationStartEvent(_Event):
    """The model is given a prompt of ``prompt_tokens`` tokens and reads it before its first token.

    A local model on a CPU reads a long first prompt (the tools' instructions) for many seconds before it
    writes anything; a listener can say so while it waits (the CLI shows a status line after 2 s).
    """

    type: Literal["generation_start"] = "generation_start"
    prompt_tokens: int


class TokenDeltaEvent(_Event):
    """Text the model just generated, on its channel (analysis, commentary, final)."""

    type: Literal["token"] = "token"
    channel: str | None
    text: str
    recipient: str | None = None


class GeneratedMessage(BaseModel):
    """One message of a generation, as parsed: its channel, recipient and text."""

    channel: str | None = None
    recipient: str | None = None
    text: str = ""


class GenerationEvent(_Event):
    """One model generation: its raw token ids and the messages they parse to.

    Transcripts keep this record rather than the token deltas that streamed
    it (deltas are for live listeners), so ``replay`` prints from ``messages``.
    """

    type: Literal["generation"] = "generation"
    prompt_tokens: int
    prefilled_tokens: int
    cached_tokens: int = 0
    completion_tokens: int
    token_ids: list[int]
    duration_s: float
    #: Of ``duration_s``, the seconds the backend spent on the prompt before the first token (0 where it does not say):
    #: the rest over ``completion_tokens - 1`` is the decode speed (benchmarks/gguf_20b.py reads both).
    prefill_s: float = 0.0
    stop_token: int | None
    messages: list[GeneratedMessage] = []


class ToolCallEvent(_Event):
    type: Literal["tool_call"] = "tool_call"
    call_id: str
    recipient: str
    channel: str | None
    content: str


class ToolResultEvent(_Event):
    type: Literal["tool_result"] = "tool_result"
    call_id: str
    recipient: str
    content: str
    is_error: bool = False
    refused: bool = False
    duration_s: float = 0.0
    files: list[str] = []
    images: list[str] = []


class FinalEvent(_Event):
    type: Literal["final"] = "final"
    text: str


class ErrorEvent(_Event):
    """Something went wrong. ``recovered`` errors were handled (the model was told)."""

    type: Literal["error"] = "error"
    kind: Literal["parse", "routing", "model", "tool", "budget", "retry"]
    message: str
    recovered: bool = True


class RunEndEvent(_Event):
    type: Literal["run_end"] = "run_end"
    stop_reason: str
    steps: int
    usage: Usage
    final_text: str | None = None
    error: str | None = None
    #: The pages the final answer cites (its 【cursor†lines】 marks), from what the conversation's browser showed.
    sources: list[Source] = Field(default_factory=list)
    #: Host paths, inside the session's output folder, of the files this turn's tools made (copied out of the
    #: sandbox at the end of the turn, and the figures copied as they were shown).
    files: list[str] = Field(default_factory=list)


Event = Annotated[
    RunStartEvent
    | GenerationStartEvent
    | TokenDeltaEvent
    | GenerationEvent
    | ToolCallEvent
    | ToolResultEvent
    | FinalEvent
    | ErrorEvent
    | RunEndEvent,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def event_from_json(line: str) -> Event:
    return EVENT_ADAPTER.validate_json(line)
