"""``Agent``: what an agent is. Sessions (``agent.session()``) are what it does.

The agent holds configuration: the model, the tools, instructions, budgets,
an approval hook, a transcript. Everything a run brings to life belongs to a
:class:`~agent.session.Session`. For the common case the agent keeps a
default session, so ``agent.run(...)`` followed by
``agent.run(..., previous=result)`` just works, with the python tool's
variables and the browser's pages still there in the second turn.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

from openai_harmony import Message

from harmony_agent import events as ev
from harmony_agent.harmony.encoding import GPT_OSS_CONTEXT_WINDOW, developer_message, reasoning_effort, system_message
from harmony_agent.harmony.schema import normalize_description
from harmony_agent.loop import MAX_RESULT_CHARS, Approver, TurnSettings
from harmony_agent.models import Model, SamplingParams, load_model
from harmony_agent.results import RunResult
from harmony_agent.routing import Router
from harmony_agent.sandboxes.runtime import runtime
from harmony_agent.session import Session
from harmony_agent.tools.base import Tool
from harmony_agent.transcript import Transcript

log = logging.getLogger("harmony_agent.agent")

#: Seconds an approval hook (a person at a prompt) may take before the call is refused.
DEFAULT_APPROVAL_TIMEOUT = 600.0

#: Tokens one generation may use by default, by reasoning effort. gpt-oss thinks for longer
#: at higher effort: a flat 4096 cut ``reasoning="high"`` off mid-thought. The loop also keeps
#: every generation inside the context window, so a small window bounds it further.
MAX_TOKENS_BY_EFFORT = {"low": 8192, "medium": 16384, "high": 32768}


class Agent:
    """A gpt-oss agent: a model, tools, and the budgets that bound a run.

    ``model`` is a :class:`~agent.models.Model` or a spec for
    :func:`~agent.models.load_model`. ``approve`` may refuse tool calls (the
    refusal goes back to the model); it gets ``approval_timeout`` seconds.
    ``transcript`` is a path or :class:`Transcript` that events are appended
    to. ``context_window`` defaults to what the model reports (a server's
    ``max_model_len``), else gpt-oss's 131072. ``max_tokens`` bounds one
    generation: ``"auto"`` (the default) takes :data:`MAX_TOKENS_BY_EFFORT`
    for the reasoning effort (8192, 16384, 32768 for low, medium, high),
    ``None`` whatever room the context window leaves; every generation stays
    inside the window either way.
    ``output_dir`` is where the files
    the tools make come home (the python tool's ``/mnt/data``, copied at the end
    of each turn); by default each session gets ``runs/<run id>/`` under the
    current folder, made only once there is a file to put in it.
    """

    def __init__(
        self,
        model: Model | str,
        tools: Sequence[Tool] = (),
        instructions: str | None = None,
        reasoning: str = "medium",
        max_steps: int = 20,
        transcript: str | os.PathLike[str] | Transcript | None = None,
        approve: Approver | None = None,
        *,
        max_tokens: int | Literal["auto"] | None = "auto",
        context_window: int | None = None,
        sampling: SamplingParams | None = None,
        date: str | None = None,
        approval_timeout: float | None = DEFAULT_APPROVAL_TIMEOUT,
        max_result_chars: int = MAX_RESULT_CHARS,
        output_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if max_tokens != "auto" and max_tokens is not None and (isinstance(max_tokens, bool) or max_tokens < 1):
            raise ValueError(
                "max_tokens must be at least 1, 'auto' (by reasoning effort) or None (as many as the window allows)"
            )
        if max_result_chars < 1000:
            raise ValueError("max_result_chars must be at least 1000")
        self.tools = list(tools)
        Router(self.tools)  # refuses clashing recipients now, with a message naming both tools
        self.model = load_model(model) if isinstance(model, str) else model
        self.instructions = instructions
        reasoning_effort(reasoning)  # validates
        self.reasoning = str(reasoning).lower()
        self.max_steps = max_steps
        self.max_tokens = max_tokens
        self._context_window = context_window
        self.sampling = sampling or SamplingParams()
        self.approve = approve
        self.approval_timeout = approval_timeout
        self.max_result_chars = max_result_chars
        self.date = date
        self.transcript = (
            transcript if isinstance(transcript, Transcript) or transcript is None else Transcript(transcript)
        )
        #: Where sessions put the files their tools make; None: each session its own ``runs/<run id>/`` here.
        self.output_dir = output_dir
        self._default: Session | None = None
        self._guard = threading.Lock()
        self._sessions: list[Session] = []
        # Tools that sessions of their own share rather than copy (an MCP connection made with shared=True):
        # no such session closes them, so the agent does.
        self._shared: list[Tool] = []

    # -- configuration -----------------------------------------------------------

    @property
    def max_tokens(self) -> int | None:
        """Tokens one generation may use: the number given, or by reasoning effort for ``"auto"``."""
        if self._max_tokens == "auto":
            return MAX_TOKENS_BY_EFFORT.get(self.reasoning, MAX_TOKENS_BY_EFFORT["medium"])
        return self._max_tokens

    @max_tokens.setter
    def max_tokens(self, value: int | Literal["auto"] | None) -> None:
        self._max_tokens = value

    @property
    def context_window(self) -> int:
        return self._context_window or getattr(self.model, "context_window", None) or GPT_OSS_CONTEXT_WINDOW

    @context_window.setter
    def context_window(self, value: int | None) -> None:
        self._context_window = value

    def preamble(self) -> list[Message]:
        """The system and developer messages every conversation of this agent starts with."""
        builtins = []
        for tool in self.tools:
            config = tool.namespace_config()
            if config is not None:
                config = config.model_copy(update={"tools": [normalize_description(d) for d in config.tools]})
                builtins.append(config)
        functions = [
            normalize_description(d) for tool in self.tools if not tool.is_builtin for d in tool.descriptions()
        ]
        messages = [system_message(reasoning=self.reasoning, date=self.date, builtin_tools=builtins)]
        developer = developer_message(self.instructions, functions)
        if developer is not None:
            messages.append(developer)
        bind = getattr(self.model, "bind_preamble", None)  # duck-typed models may lack it
        if bind is not None:
            bind(messages)  # a server that renders harmony itself needs the tools as data
        return messages

    def turn_settings(self) -> TurnSettings:
        return TurnSettings(
            max_steps=self.max_steps,
            max_tokens=self.max_tokens,
            context_window=self.context_window,
            sampling=self.sampling,
            approve=self.approve,
            approval_timeout=self.approval_timeout,
            max_result_chars=self.max_result_chars,
        )

    # -- sessions ----------------------------------------------------------------

    def session(self, *, output_dir: str | os.PathLike[str] | None = None) -> Session:
        """A new session with tools of its own (a new kernel, browser, display), for a separate or parallel conversation.

        ``output_dir`` is where its tools' files are copied (default: the agent's, else ``runs/<run id>/``)."""
        tools = [tool.fresh() for tool in self.tools]
        # A tool that fresh() returned as itself is shared (a function tool, a shared MCP connection):
        # the new session uses it but does not close it.
        owned = [new for new, old in zip(tools, self.tools) if new is not old]
        session = Session(self, tools, owned=owned, output_dir=output_dir)
        with self._guard:
            self._sessions.append(session)
            self._shared += [tool for tool in tools if tool not in owned and tool not in self._shared]
        return session

    @property
    def default_session(self) -> Session:
        """The session ``run``/``arun``/``stream`` use when not continuing another session's result.

        It uses the tool objects you gave the agent (so ``python_tool.sandbox`` is the one that runs).
        """
        with self._guard:
            if self._default is None or self._default.closed:
                self._default = Session(self, self.tools)
                self._sessions.append(self._default)
            return self._default

    def _session_for(self, previous: RunResult | None) -> Session:
        if previous is not None and previous.session_number is not None:
            with self._guard:
                found = next((s for s in self._sessions if s.number == previous.session_number), None)
            if found is not None and not found.closed:
                return found
        return self.default_session

    @property
    def last_result(self) -> RunResult | None:
        """The result of the default session's most recent turn."""
        return self._default.last_result if self._default is not None else None

    # -- running -----------------------------------------------------------------

    def run(
        self, task: str | None, *, previous: RunResult | None = None, tool_outputs: Mapping[str, str] | None = None
    ) -> RunResult:
        """Run a task to completion (blocking). ``previous=`` continues that conversation, in its session;
        ``tool_outputs=`` answers the calls it paused on."""
        return self._session_for(previous).run(task, previous=previous, tool_outputs=tool_outputs)

    async def arun(
        self, task: str | None, *, previous: RunResult | None = None, tool_outputs: Mapping[str, str] | None = None
    ) -> RunResult:
        """Run a task to completion from async code; the same session as :meth:`run`, so the two mix freely."""
        return await self._session_for(previous).arun(task, previous=previous, tool_outputs=tool_outputs)

    async def stream(
        self, task: str | None, *, previous: RunResult | None = None, tool_outputs: Mapping[str, str] | None = None
    ) -> AsyncIterator[ev.Event]:
        """Run a task, yielding typed events as they happen (the last is a RunEndEvent)."""
        async for event in self._session_for(previous).stream(task, previous=previous, tool_outputs=tool_outputs):
            yield event

    async def start(self) -> list[str]:
        """Start the default session's model and tools now; returns what the tools said (which sandbox, ...)."""
        return await self.default_session.start()

    # -- closing -----------------------------------------------------------------

    def _take_sessions(self) -> tuple[list[Session], list[Tool]]:
        """The sessions to close, and the shared tools none of them owns (the agent closes those)."""
        with self._guard:
            sessions, self._sessions, self._default = self._sessions, [], None
            shared, self._shared = self._shared, []
        owned = {id(tool) for session in sessions for tool in session._owned}
        return sessions, [tool for tool in shared if id(tool) not in owned and not tool.held_by_user]

    async def _close_shared(self, tools: list[Tool]) -> None:
        for tool in tools:
            try:
                await tool.aclose()
            except Exception as exc:  # one tool failing to close must not keep the others open
                log.warning("closing %s failed: %s", type(tool).__name__, exc)

    async def aclose(self) -> None:
        """Close every session of this agent, the tools they shared, then the model and the transcript.
        Safe to call twice.

        The model is closed on the runtime, where sessions used it (a model shared with another
        agent is closed by this one too: share a model by sharing the agent, or close agents last).
        """
        sessions, shared = self._take_sessions()
        for session in sessions:
            await session.aclose()
        await runtime().run_async(self._close_shared(shared))
        await runtime().run_async(self.model.aclose())
        if self.transcript is not None:
            self.transcript.close()

    def close(self) -> None:
        """Blocking form of :meth:`aclose` (from any thread but the runtime's own)."""
        sessions, shared = self._take_sessions()
        for session in sessions:
            session.close()
        runtime().run(self._close_shared(shared))
        runtime().run(self.model.aclose())
        if self.transcript is not None:
            self.transcript.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
