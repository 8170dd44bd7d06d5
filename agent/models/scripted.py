"""Models that need no weights: a script of completions, or a Python policy.

Both write harmony text, which is encoded (special tokens allowed) and
streamed token by token, so they exercise exactly the encode, stream and
parse path of a real model. They drive the tests and the demos.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from openai_harmony import Message

from harmony_agent.harmony.encoding import encode_completion
from harmony_agent.harmony.parsing import parse_conversation
from harmony_agent.models.base import GenerationStats, Model, ModelError, SamplingParams, infer_stop_token
from harmony_agent.yaml_files import YamlFileError, read_yaml

Policy = Callable[[list[Message]], Any]


class _TextModel(Model):
    """Shared streaming of harmony text as tokens."""

    async def _stream_text(
        self, text: str, prompt: Sequence[int], stop: Sequence[int], sampling: SamplingParams
    ) -> AsyncIterator[int]:
        tokens = encode_completion(text)
        stop_set = set(stop)
        if (not tokens or tokens[-1] not in stop_set) and not any(t in stop_set for t in tokens):
            tokens.append(infer_stop_token(tokens))
        self.last_stats = GenerationStats(prompt_tokens=len(prompt), prefilled_tokens=len(prompt))
        for token in tokens:
            if sampling.max_tokens is not None and self.last_stats.completion_tokens >= sampling.max_tokens:
                return
            self.last_stats.completion_tokens += 1
            yield token
            if token in stop_set:
                return
            await asyncio.sleep(0)


class ScriptedModel(_TextModel):
    """Replays completions written as harmony text, one per generation.

    Each completion is what the model would write after ``<|start|>assistant``,
    for example ``<|channel|>final<|message|>Hi!<|return|>``. A missing final
    stop token is inferred (``<|call|>`` when the header names a recipient).
    """

    def __init__(self, completions: Sequence[str], *, name: str = "scripted") -> None:
        super().__init__()
        if isinstance(completions, str):
            raise TypeError("ScriptedModel takes a list of completions, not one string")
        self.completions = list(completions)
        self.name = name
        self._next = 0

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedModel:
        """Load ``completions: [...]`` from a YAML or JSON file (YAML by the project's guarded reader: a file
        someone sent may be a YAML bomb)."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"script file not found: {path}")
        try:
            if path.suffix in (".yaml", ".yml"):
                data = read_yaml(path, what="script file")
            else:
                data = json.loads(path.read_text())
        except YamlFileError as exc:
            raise ModelError(str(exc).splitlines()[0]) from None
        except json.JSONDecodeError as exc:
            raise ModelError(f"script file {path} is not valid JSON: {exc}") from None
        completions = data.get("completions") if isinstance(data, dict) else data
        if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
            raise ModelError(f"script file {path} must hold 'completions:' as a list of strings")
        return cls(completions, name=f"scripted:{path.name}")

    @property
    def remaining(self) -> int:
        return len(self.completions) - self._next

    async def generate(
        self, prompt: Sequence[int], *, stop: Sequence[int], sampling: SamplingParams
    ) -> AsyncIterator[int]:
        if self._next >= len(self.completions):
            raise ModelError(f"the script has no completion left (it had {len(self.completions)})")
        text = self.completions[self._next]
        self._next += 1
        async for token in self._stream_text(text, prompt, stop, sampling):
            yield token


class PolicyModel(_TextModel):
    """A Python callable decides each completion from the conversation so far.

    The callable receives the conversation as openai_harmony ``Message``
    objects (parsed back from the prompt tokens) and returns harmony text;
    it may be async.
    """

    def __init__(self, policy: Policy, *, name: str | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.name = name or f"policy:{getattr(policy, '__name__', type(policy).__name__)}"

    async def generate(
        self, prompt: Sequence[int], *, stop: Sequence[int], sampling: SamplingParams
    ) -> AsyncIterator[int]:
        messages = parse_conversation(prompt)
        text = self.policy(messages)
        if inspect.isawaitable(text):
            text = await text
        if not isinstance(text, str):
            raise ModelError(f"policy {self.name} returned {type(text).__name__}, expected harmony text (str)")
        async for token in self._stream_text(text, prompt, stop, sampling):
            yield token
