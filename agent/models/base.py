"""The one interface every model backend implements.

A model is given prompt token ids, the stop token ids and sampling settings,
and streams generated token ids. Keeping the interface at the token level is
what lets the loop keep the model's exact tokens in history (and a local
model reuse its KV cache): nothing is re-rendered between steps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from openai_harmony import Message

from harmony_agent.harmony.encoding import CALL, GPT_OSS_CONTEXT_WINDOW, MESSAGE, RETURN, START, decode_lossy


class ModelError(RuntimeError):
    """A backend could not produce a completion (server down, script exhausted, ...)."""


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings. The defaults are what gpt-oss recommends."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")


@dataclass(frozen=True)
class Retry:
    """One retried request: which attempt failed, why, and how long the backend waits before the next."""

    attempt: int
    reason: str
    delay_s: float


@dataclass
class GenerationStats:
    """What the last generation cost: prompt size, how much was prefilled, tokens generated.

    ``retries`` lists the requests a backend retried (server busy, connection
    refused) while producing this generation, in order.
    """

    prompt_tokens: int = 0
    prefilled_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    prefill_seconds: float = 0.0
    retries: list[Retry] = field(default_factory=list)


class Model(ABC):
    """A token-in, token-out language model."""

    name: str = "model"
    context_window: int = GPT_OSS_CONTEXT_WINDOW

    def __init__(self) -> None:
        self.last_stats = GenerationStats()
        #: Called with each :class:`Retry` as it happens (before the wait), so a
        #: caller can show it live; the same records land in ``last_stats.retries``.
        self.on_retry: Callable[[Retry], None] | None = None

    async def start(self) -> None:
        """Get ready to serve a session; learn what depends on the backend (``context_window``).

        Called once per session before the first :meth:`generate`; safe to call
        again. The default does nothing.
        """

    @abstractmethod
    def generate(self, prompt: Sequence[int], *, stop: Sequence[int], sampling: SamplingParams) -> AsyncIterator[int]:
        """Stream generated token ids.

        The stream ends after a stop token (which is yielded) or when
        ``sampling.max_tokens`` tokens were produced. Backends fill
        :attr:`last_stats` as they go.
        """

    def bind_preamble(self, preamble: Sequence[Message]) -> None:
        """Take note of a conversation's system and developer messages as structured data.

        A token-level backend needs nothing but the prompt, so the default does
        nothing. A backend whose server renders harmony itself (Chat
        Completions, Responses) cannot recover the tools' JSON schemas from
        tokens: :class:`~harmony_agent.Agent` hands each preamble over here when
        it builds one.
        """

    async def aclose(self) -> None:
        """Release resources (HTTP clients, GPU memory)."""


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two sequences share: what a backend's KV cache can keep of a new prompt."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def infer_stop_token(tokens: Sequence[int]) -> int:
    """Which stop token ended a completion whose backend did not say.

    A message whose header names a recipient ended in ``<|call|>``; anything
    else in ``<|return|>``.
    """
    start = max((i for i, t in enumerate(tokens) if t == START), default=-1) + 1
    try:
        header_end = list(tokens).index(MESSAGE, start)
    except ValueError:
        header_end = len(tokens)
    header = decode_lossy(tokens[start:header_end])
    return CALL if "to=" in header else RETURN
