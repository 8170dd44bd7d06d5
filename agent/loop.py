"""``Agent``: render, generate, parse, route, feed back; until a final answer or a budget.

One step is one model generation. The prompt of each step is the previous
prompt plus the model's own tokens plus the tool's rendered reply, so nothing
is re-rendered and a local model prefills only what is new.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Union

from openai_harmony import Message

from tools.base import Tool, ToolCall, ToolResult, result_message

from . import events as ev
from .harmony import GPT_OSS_CONTEXT_WINDOW, developer_message, reasoning_effort, stop_tokens, system_message
from .history import History
from .models import Model, ModelError, SamplingParams, load_model
from .parsing import CompletionParser, ParsedMessage
from .routing import Router
from .transcript import Transcript

#: An approval hook: return True to allow a call, False or a reason (str) to refuse it.
Approver = Callable[[ToolCall], Union[bool, str, Awaitable[Union[bool, str]]]]


@dataclass
class RunResult:
    """The outcome of a run.

    ``stop_reason`` is ``final``, ``max_steps``, ``max_tokens``,
    ``context_window`` or ``model_error``.
    """

    final_text: str | None
    stop_reason: str
    steps: int
    usage: ev.Usage
    messages: list[Message]
    events: list[ev.Event] = field(default_factory=list, repr=False)
    _history: History | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.stop_reason == "final"


class Agent:
    """A gpt-oss agent: a model, tools, and the budgets that bound a run.

    ``model`` is a :class:`~agent.models.Model` or a spec for
    :func:`~agent.models.load_model`. ``approve`` may refuse tool calls; the
    refusal goes back to the model. ``transcript`` is a path or
    :class:`Transcript` that every event is appended to.
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
        max_tokens: int | None = 4096,
        context_window: int | None = None,
        sampling: SamplingParams | None = None,
        date: str | None = None,
    ) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        self.model = load_model(model) if isinstance(model, str) else model
        self.tools = list(tools)
        self.router = Router(self.tools)
        self.instructions = instructions
        reasoning_effort(reasoning)  # validates
        self.reasoning = str(reasoning).lower()
        self.max_steps = max_steps
        self.max_tokens = max_tokens
        self.context_window = context_window or getattr(self.model, "context_window", None) or GPT_OSS_CONTEXT_WINDOW
        self.sampling = sampling or SamplingParams()
        self.approve = approve
        self.date = date
        self.transcript = transcript if isinstance(transcript, Transcript) or transcript is None else Transcript(transcript)
        self._call_ids = itertools.count(1)
        #: The result of the most recent run that finished (handy after :meth:`stream`).
        self.last_result: RunResult | None = None

    # -- conversation set-up -------------------------------------------------

    def _preamble(self) -> list[Message]:
        builtins = [cfg for tool in self.tools if (cfg := tool.namespace_config()) is not None]
        functions = [d for tool in self.tools if not tool.is_builtin for d in tool.descriptions()]
        messages = [system_message(reasoning=self.reasoning, date=self.date, builtin_tools=builtins)]
        developer = developer_message(self.instructions, functions)
        if developer is not None:
            messages.append(developer)
        return messages

    # -- public API ------------------------------------------------------------

    def run(self, task: str, *, previous: RunResult | None = None) -> RunResult:
        """Run a task to completion (blocking). Use :meth:`arun` inside an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.arun(task, previous=previous))
        raise RuntimeError("Agent.run() was called inside a running event loop; use 'await agent.arun(...)'")

    async def arun(self, task: str, *, previous: RunResult | None = None) -> RunResult:
        """Run a task; pass ``previous`` to continue that conversation with a new user turn."""
        outcome: list[RunResult] = []
        async for _ in self._run(task, previous, outcome):
            pass
        return outcome[0]

    async def stream(self, task: str, *, previous: RunResult | None = None) -> AsyncIterator[ev.Event]:
        """Run a task, yielding typed events as they happen (the last is a RunEndEvent)."""
        async for event in self._run(task, previous, []):
            yield event

    async def _run(self, task: str, previous: RunResult | None, outcome: list[RunResult]) -> AsyncIterator[ev.Event]:
        collected: list[ev.Event] = []

        def emit(event: ev.Event) -> ev.Event:
            collected.append(event)
            if self.transcript is not None:
                self.transcript.write(event)
            return event

        history = previous._history if previous is not None and previous._history is not None else History(self._preamble())
        history.add_user(task)
        usage = ev.Usage()
        final_text: str | None = None
        stop_reason = "max_steps"
        stop = stop_tokens()
        steps = 0
        yield emit(ev.RunStartEvent(task=task, model=self.model.name, tools=self.router.available(), reasoning=self.reasoning))

        for step in range(1, self.max_steps + 1):
            steps = step
            prompt = history.prompt()
            room = self.context_window - len(prompt)
            if room <= 0:
                stop_reason = "context_window"
                yield emit(ev.ErrorEvent(step=step, kind="budget", recovered=False, message=f"the prompt ({len(prompt)} tokens) fills the context window ({self.context_window})"))
                break
            limit = min(self.max_tokens or room, room)
            sampling = dataclasses.replace(self.sampling, max_tokens=limit)
            parser = CompletionParser()
            generated: list[int] = []
            started = time.perf_counter()
            try:
                async for token in self.model.generate(prompt, stop=stop, sampling=sampling):
                    generated.append(token)
                    delta = parser.feed(token)
                    if delta is not None:
                        yield emit(ev.TokenDeltaEvent(step=step, channel=delta.channel, text=delta.text, recipient=delta.recipient))
            except Exception as exc:  # a backend failure ends the run with a reason, never a crash
                stop_reason = "model_error"
                message = str(exc) if isinstance(exc, ModelError) else f"{type(exc).__name__}: {exc}"
                yield emit(ev.ErrorEvent(step=step, kind="model", recovered=False, message=message))
                break
            parsed = parser.close()
            stats = self.model.last_stats
            usage.prompt_tokens += len(prompt)
            usage.prefilled_tokens += stats.prefilled_tokens
            usage.completion_tokens += len(generated)
            usage.generations += 1
            stop_token = generated[-1] if generated and generated[-1] in stop else None
            yield emit(ev.GenerationEvent(
                step=step, prompt_tokens=len(prompt), prefilled_tokens=stats.prefilled_tokens,
                completion_tokens=len(generated), token_ids=generated,
                duration_s=time.perf_counter() - started, stop_token=stop_token,
            ))
            for item in parsed:
                if item.problem:
                    yield emit(ev.ErrorEvent(step=step, kind="parse", message=f"recovered from {item.problem}"))
            history.add_generation(parsed)

            if stop_token is None:
                stop_reason = "max_tokens" if limit == self.max_tokens and len(generated) >= limit else "context_window"
                yield emit(ev.ErrorEvent(step=step, kind="budget", recovered=False, message=f"generation stopped after {len(generated)} tokens without finishing ({stop_reason})"))
                break

            last = parsed[-1] if parsed else None
            if last is not None and last.is_call:
                async for event in self._route(last, step, history):
                    yield emit(event)
                continue

            # No call: the turn is over. The final channel is expected, but whatever
            # message ended the turn is the answer the model gave.
            final_text = last.text if last is not None else ""
            stop_reason = "final"
            history.finish_turn()
            yield emit(ev.FinalEvent(step=step, text=final_text))
            break

        end = emit(ev.RunEndEvent(step=steps, stop_reason=stop_reason, steps=steps, usage=usage, final_text=final_text))
        result = RunResult(final_text, stop_reason, steps, usage, history.messages, collected, history)
        self.last_result = result
        outcome.append(result)
        yield end

    # -- routing ---------------------------------------------------------------

    async def _route(self, parsed: ParsedMessage, step: int, history: History) -> AsyncIterator[ev.Event]:
        recipient = parsed.recipient or ""
        call_id = f"call_{next(self._call_ids)}"
        yield ev.ToolCallEvent(step=step, call_id=call_id, recipient=recipient, channel=parsed.channel, content=parsed.text)
        started = time.perf_counter()
        resolved = self.router.resolve(recipient)
        refused = False
        if resolved is None:
            call = ToolCall(recipient, parsed.channel, parsed.text, parsed.message.content_type)
            message = self.router.unknown_message(recipient)
            yield ev.ErrorEvent(step=step, kind="routing", message=message)
            replies, result = [result_message(call, ToolResult(error=message))], ToolResult(error=message)
        else:
            tool, canonical = resolved
            call = ToolCall(canonical, parsed.channel, parsed.text, parsed.message.content_type)
            verdict = await self._ask_approval(call)
            if verdict is not True:
                refused = True
                reason = verdict if isinstance(verdict, str) and verdict else "the user did not approve this call"
                result = ToolResult(error=f"call refused: {reason}")
                replies = [result_message(call, result)]
            else:
                try:
                    result = await tool.execute(call)
                    replies = tool.reply(call, result)
                except Exception as exc:  # a misbehaving tool must not end the run
                    result = ToolResult(error=f"{type(exc).__name__}: {exc}")
                    replies = [result_message(call, result)]
        history.add_tool_messages(replies)
        yield ev.ToolResultEvent(
            step=step, call_id=call_id, recipient=call.recipient, content=result.text(),
            is_error=result.is_error, refused=refused, duration_s=time.perf_counter() - started,
            files=list(result.files), images=list(result.images),
        )

    async def _ask_approval(self, call: ToolCall) -> bool | str:
        if self.approve is None:
            return True
        try:
            verdict = self.approve(call)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except Exception as exc:  # a broken hook refuses rather than crashing the run
            return f"the approval hook failed: {exc}"
        return True if verdict is True else (verdict if isinstance(verdict, str) else False)

    async def aclose(self) -> None:
        """Close the tools, the model and the transcript."""
        for tool in self.tools:
            await tool.aclose()
        await self.model.aclose()
        if self.transcript is not None:
            self.transcript.close()

    async def __aenter__(self) -> "Agent":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
