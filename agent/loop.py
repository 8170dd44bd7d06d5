"""The loop of one turn: render, generate, parse, route, feed back; until a final answer or a budget.

One step is one model generation. The prompt of each step is the previous
prompt plus the model's own tokens plus the tool's rendered reply, so nothing
is re-rendered and a local model prefills only what is new.

Nothing that comes back (the model's tokens, a tool's result, an approval
hook's verdict) can crash the turn: each is checked where it enters, and a
failure becomes an event and, where the model can act on it, a message to
the model. Only a cancellation of the run itself goes through.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from openai_harmony import Message, TextContent

from harmony_agent import events as ev
from harmony_agent.harmony.encoding import VOCAB_SIZE, stop_tokens
from harmony_agent.harmony.parsing import CompletionParser, ParsedMessage
from harmony_agent.history import History
from harmony_agent.models import Model, ModelError, SamplingParams
from harmony_agent.results import PendingCall
from harmony_agent.routing import Router
from harmony_agent.sandboxes.runtime import call_maybe_async
from harmony_agent.tools.base import Tool, ToolCall, ToolResult, result_message

#: An approval hook: return True to allow a call, False or a reason (str) to refuse it.
Approver = Callable[[ToolCall], bool | str | Awaitable[bool | str]]

#: A tool result longer than this is cut (head and tail kept) before it is tokenized.
MAX_RESULT_CHARS = 32_000


@dataclass(frozen=True)
class TurnSettings:
    """What bounds and shapes a turn (taken from the agent's configuration)."""

    max_steps: int
    max_tokens: int | None
    context_window: int
    sampling: SamplingParams
    approve: Approver | None
    approval_timeout: float | None
    max_result_chars: int = MAX_RESULT_CHARS


_call_ids = itertools.count(1)


async def run_turn(
    model: Model, router: Router, history: History, settings: TurnSettings, pending: list[PendingCall] | None = None
) -> AsyncIterator[ev.Event]:
    """Run one user turn already added to ``history``; yields events, the last a RunEndEvent.

    ``history`` is extended in place. A call to a tool answered by the caller
    ends the turn with stop reason ``tool_call`` and the call appended to
    ``pending``. The caller builds the RunResult from the RunEndEvent and the
    history.
    """
    usage = ev.Usage()
    stop = stop_tokens()
    final_text: str | None = None
    stop_reason, error = "max_steps", None
    steps = 0
    for step in range(1, settings.max_steps + 1):
        steps = step
        prompt = history.prompt()
        room = settings.context_window - len(prompt)
        if room <= 0:
            stop_reason = "context_window"
            error = f"the prompt ({len(prompt)} tokens) fills the context window ({settings.context_window})"
            yield ev.ErrorEvent(step=step, kind="budget", recovered=False, message=error)
            break
        limit = min(settings.max_tokens or room, room)
        generation = _Generation(step, limit)
        yield ev.GenerationStartEvent(step=step, prompt_tokens=len(prompt))
        async for event in generation.run(
            model, prompt, stop, dataclasses.replace(settings.sampling, max_tokens=limit)
        ):
            yield event
        if generation.error is not None:
            stop_reason, error = "model_error", generation.error
            break
        usage.prompt_tokens += len(prompt)
        usage.prefilled_tokens += generation.prefilled
        usage.cached_tokens += generation.cached
        usage.completion_tokens += len(generation.tokens)
        usage.generations += 1
        history.add_generation(generation.parsed)

        if generation.stop_token is None:
            stop_reason, error = _unfinished(generation, settings, room)
            yield ev.ErrorEvent(
                step=step, kind="budget" if stop_reason != "model_error" else "model", recovered=False, message=error
            )
            break

        last = generation.parsed[-1] if generation.parsed else None
        if last is not None and last.is_call:
            resolved = await router.resolve_or_relist(last.recipient or "")
            if resolved is not None and resolved[0].answered_by_caller:
                call_id = f"call_{next(_call_ids)}"
                yield ev.ToolCallEvent(
                    step=step, call_id=call_id, recipient=resolved[1], channel=last.channel, content=last.text
                )
                if pending is not None:
                    pending.append(PendingCall(call_id, resolved[1], last.channel, last.text))
                stop_reason = "tool_call"
                break
            async for event in _route(last, step, router, history, settings):
                yield event
            continue

        # No call: the turn is over. The final channel is expected, but whatever
        # message ended the turn is the answer the model gave.
        final_text = last.text if last is not None else ""
        stop_reason = "final"
        history.finish_turn()
        yield ev.FinalEvent(step=step, text=final_text)
        break
    if stop_reason == "max_steps":
        error = f"the run used its {settings.max_steps} steps without a final answer"
    yield ev.RunEndEvent(
        step=steps, stop_reason=stop_reason, steps=steps, usage=usage, final_text=final_text, error=error
    )


def _unfinished(generation: _Generation, settings: TurnSettings, room: int) -> tuple[str, str]:
    """Why a generation ended without a stop token: a budget, or the backend simply stopped."""
    count = len(generation.tokens)
    if count >= generation.limit:
        reason = (
            "max_tokens"
            if settings.max_tokens is not None and generation.limit == settings.max_tokens
            else "context_window"
        )
        return reason, f"generation stopped after {count} tokens without finishing ({reason})"
    return "model_error", (
        f"the model's output ended after {count} tokens without a stop token, well within its budget "
        f"({generation.limit} tokens): the server or backend cut the completion short"
    )


class _Generation:
    """One step's generation: tokens streamed, validated and parsed; stats and any error kept."""

    def __init__(self, step: int, limit: int) -> None:
        self.step = step
        self.limit = limit
        self.tokens: list[int] = []
        self.parsed: list[ParsedMessage] = []
        self.stop_token: int | None = None
        self.error: str | None = None
        self.prefilled = 0
        self.cached = 0

    async def run(
        self, model: Model, prompt: Sequence[int], stop: Sequence[int], sampling: SamplingParams
    ) -> AsyncIterator[ev.Event]:
        parser = CompletionParser()
        started = time.perf_counter()
        seen_retries = 0

        def retries() -> list[ev.Event]:
            """The backend's retries since the last look (a busy server, a refused connection), as events."""
            nonlocal seen_retries
            found = list(getattr(model.last_stats, "retries", []))[seen_retries:]
            seen_retries += len(found)
            return [
                ev.ErrorEvent(
                    step=self.step,
                    kind="retry",
                    message=f"attempt {r.attempt} failed ({r.reason}); retrying in {r.delay_s:.1f} s",
                )
                for r in found
            ]

        try:
            async for token in model.generate(prompt, stop=stop, sampling=sampling):
                for event in retries():
                    yield event
                if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < VOCAB_SIZE:
                    raise ModelError(
                        f"the backend returned {token!r}, which is not a token id of the harmony vocabulary"
                    )
                self.tokens.append(token)
                delta = parser.feed(token)
                if delta is not None:
                    yield ev.TokenDeltaEvent(
                        step=self.step, channel=delta.channel, text=delta.text, recipient=delta.recipient
                    )
            self.parsed = parser.close()
        except asyncio.CancelledError:
            if _being_cancelled():
                raise
            self.error = "the backend's generation was cancelled"
            yield ev.ErrorEvent(step=self.step, kind="model", recovered=False, message=self.error)
            return
        except BaseException as exc:  # a backend's failure (or a tokenizer's panic) ends the run with a reason
            for event in retries():
                yield event
            self.error = str(exc) if isinstance(exc, ModelError) else f"{type(exc).__name__}: {exc}"
            yield ev.ErrorEvent(step=self.step, kind="model", recovered=False, message=self.error)
            return
        stats = model.last_stats
        self.prefilled = stats.prefilled_tokens
        self.cached = stats.cached_tokens
        self.stop_token = self.tokens[-1] if self.tokens and self.tokens[-1] in stop else None
        yield ev.GenerationEvent(
            step=self.step,
            prompt_tokens=len(prompt),
            prefilled_tokens=self.prefilled,
            cached_tokens=self.cached,
            completion_tokens=len(self.tokens),
            token_ids=self.tokens,
            duration_s=time.perf_counter() - started,
            prefill_s=stats.prefill_seconds,
            stop_token=self.stop_token,
            messages=[ev.GeneratedMessage(channel=p.channel, recipient=p.recipient, text=p.text) for p in self.parsed],
        )
        for item in self.parsed:
            if item.problem:
                yield ev.ErrorEvent(step=self.step, kind="parse", message=f"recovered from {item.problem}")


async def _route(
    parsed: ParsedMessage, step: int, router: Router, history: History, settings: TurnSettings
) -> AsyncIterator[ev.Event]:
    """Answer a call: resolve its recipient, ask for approval, run the tool, feed the reply back."""
    recipient = parsed.recipient or ""
    call_id = f"call_{next(_call_ids)}"
    yield ev.ToolCallEvent(step=step, call_id=call_id, recipient=recipient, channel=parsed.channel, content=parsed.text)
    resolved = await router.resolve_or_relist(recipient)
    refused = False
    waited = 0.0
    started = time.perf_counter()
    if resolved is None:
        call = ToolCall(recipient, parsed.channel, parsed.text, parsed.message.content_type)
        message = router.unknown_message(recipient)
        yield ev.ErrorEvent(step=step, kind="routing", message=message)
        result = ToolResult(error=message)
        replies = [result_message(call, result)]
    else:
        tool, canonical = resolved
        call = ToolCall(canonical, parsed.channel, parsed.text, parsed.message.content_type)
        asked = time.perf_counter()
        verdict = await _ask_approval(settings, call)
        waited = time.perf_counter() - asked
        if verdict is not True:
            refused = True
            reason = verdict if isinstance(verdict, str) and verdict else "the user did not approve this call"
            result = ToolResult(error=f"call refused: {reason}")
            replies = [result_message(call, result)]
        else:
            result, replies = await _process(tool, call)
            if result.is_error:
                yield ev.ErrorEvent(step=step, kind="tool", message=result.error or "")
    replies = [_capped(message, settings.max_result_chars) for message in replies]
    history.add_tool_messages(replies)
    yield ev.ToolResultEvent(
        step=step,
        call_id=call_id,
        recipient=call.recipient,
        content=_capped_text(result.text(), settings.max_result_chars),
        is_error=result.is_error,
        refused=refused,
        duration_s=time.perf_counter() - started - waited,
        files=list(result.files),
        images=list(result.images),
    )


async def _process(tool: Tool, call: ToolCall) -> tuple[ToolResult, list[Message]]:
    """Run a tool, containing anything it raises (``SystemExit`` from argparse included).

    Only a cancellation of the run goes through; a ``CancelledError`` the tool
    raised of its own accord is the tool's failure like any other.
    """
    try:
        result = await tool.process(call)
        return result, [result_message(call, result)]
    except asyncio.CancelledError:
        if _being_cancelled():
            raise
        result = ToolResult(error="the tool was cancelled before it answered")
    # a misbehaving tool must not end the run; Ctrl-C reaches the caller's thread, not this one
    except BaseException as exc:
        result = ToolResult(error=f"{type(exc).__name__}: {exc}")
    return result, [result_message(call, result)]


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return True if cancelling is None else bool(cancelling())


async def _ask_approval(settings: TurnSettings, call: ToolCall) -> bool | str:
    if settings.approve is None:
        return True
    try:
        verdict = await asyncio.wait_for(call_maybe_async(settings.approve, call), settings.approval_timeout)
        task = asyncio.current_task()
        if task is not None and getattr(task, "cancelling", lambda: 0)():
            raise asyncio.CancelledError  # the answer came with a cancellation: the cancellation wins
    except asyncio.TimeoutError:
        return f"no approval came within {settings.approval_timeout:g} s"
    except asyncio.CancelledError:
        if _being_cancelled():
            raise
        return "the approval hook was cancelled"
    except Exception as exc:  # a broken hook refuses rather than crashing the run
        return f"the approval hook failed: {exc}"
    return True if verdict is True else (verdict if isinstance(verdict, str) else False)


def _capped_text(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters: the head and tail kept, with a note of what was cut."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n\n[… {cut} characters cut from this result …]\n\n{text[-tail:]}"


def _capped(message: Message, limit: int) -> Message:
    """A tool message whose text fits ``limit`` (tokenizing megabytes is slow, and fills the window)."""
    texts = [getattr(part, "text", None) for part in message.content]
    if sum(len(t) for t in texts if t) <= limit:
        return message
    joined = "".join(t for t in texts if t)
    others = [part for part in message.content if getattr(part, "text", None) is None]
    return message.model_copy(update={"content": [TextContent(text=_capped_text(joined, limit)), *others]})
