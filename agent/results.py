"""What a turn gives back: data, with no live resources in it.

A :class:`RunResult` names the session that ran it by number rather than holding it, so a result
can be kept, compared, pickled or sent across threads without keeping a kernel or a browser alive;
``agent.run(..., previous=result)`` finds the session again by that number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openai_harmony import Message

from harmony_agent import events as ev
from harmony_agent.history import History


@dataclass(frozen=True)
class PendingCall:
    """A call the turn paused on, for the caller to answer (see ``Tool.answered_by_caller``)."""

    call_id: str
    recipient: str
    channel: str | None
    arguments: str


@dataclass
class RunResult:
    """The outcome of a run.

    ``stop_reason`` is ``final``, ``max_steps``, ``max_tokens``,
    ``context_window``, ``model_error``, or ``tool_call`` when the turn paused
    on ``pending_calls`` for the caller to answer; ``error`` says what ended a
    run that did not end with an answer. Pass the result as ``previous=`` to
    continue its conversation (in the session it came from), with
    ``tool_outputs=`` when it paused.
    """

    final_text: str | None
    stop_reason: str
    steps: int
    usage: ev.Usage
    messages: list[Message]
    events: list[ev.Event] = field(default_factory=list, repr=False)
    error: str | None = None
    pending_calls: list[PendingCall] = field(default_factory=list)
    #: The number of the session that ran it (``Session.number``): ``previous=`` continues there.
    session_number: int | None = None
    _history: History | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.stop_reason == "final"

    @property
    def sources(self) -> list[ev.Source]:
        """The pages the final answer cites (its ``【cursor†Lx-Ly】`` marks), with their URLs, for people to follow."""
        end = next((e for e in reversed(self.events) if isinstance(e, ev.RunEndEvent)), None)
        return list(end.sources) if end is not None else []

    @property
    def files(self) -> list[str]:
        """Host paths of the files this turn made, inside the session's output folder (``session.output_dir``)."""
        end = next((e for e in reversed(self.events) if isinstance(e, ev.RunEndEvent)), None)
        return list(end.files) if end is not None else []
