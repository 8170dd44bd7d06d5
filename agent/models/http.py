"""Models served over HTTP: vLLM, llama.cpp's server, Ollama.

This is the scale-out path for when one GPU is not enough. We always send the
rendered harmony prompt ourselves (raw completions, never a chat template), so
the server sees exactly the tokens the loop keeps:

* ``openai`` flavour: ``POST {base}/v1/completions`` with the prompt as token
  ids and ``stop_token_ids`` (vLLM; llama.cpp's server accepts token prompts
  too). Generated token ids are read from ``token_ids`` when the server
  returns them (vLLM's ``return_token_ids``), otherwise the text is encoded.
* ``ollama`` flavour: ``POST {base}/api/generate`` with ``raw: true`` and the
  prompt as text.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from ..harmony import decode, encode_completion, get_encoding
from .base import GenerationStats, Model, ModelError, SamplingParams, infer_stop_token


class _TextToTokens:
    """Encode streamed text incrementally without splitting special tokens.

    A chunk may end inside ``<|channel|>``; that tail is held back until the
    next chunk completes it, so special tokens always encode as themselves.
    """

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, text: str) -> list[int]:
        self._pending += text
        cut = self._pending.rfind("<|")
        if cut != -1 and "|>" not in self._pending[cut:]:
            ready, self._pending = self._pending[:cut], self._pending[cut:]
        else:
            ready, self._pending = self._pending, ""
        return encode_completion(ready) if ready else []

    def flush(self) -> list[int]:
        rest, self._pending = self._pending, ""
        return encode_completion(rest) if rest else []


class OpenAICompatibleModel(Model):
    """A raw-completions server. ``base_url`` may end in ``/v1`` or not."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        flavor: str = "openai",
        api_key: str | None = None,
        timeout: float = 600.0,
        context_window: int | None = None,
    ) -> None:
        super().__init__()
        if flavor not in ("openai", "ollama"):
            raise ValueError("flavor must be 'openai' or 'ollama'")
        base = base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        self.base_url = base
        self.flavor = flavor
        self.model_name = model
        self.name = f"{flavor}:{base}" + (f"/{model}" if model else "")
        if context_window:
            self.context_window = context_window
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10.0), headers=headers)

    async def _default_model(self) -> str | None:
        """Ask the server which model it serves, when none was named."""
        if self.model_name is None and self.flavor == "openai":
            try:
                response = await self._client.get(f"{self.base_url}/v1/models")
                data = response.json().get("data") or []
                if data:
                    self.model_name = data[0].get("id")
            except (httpx.HTTPError, ValueError, AttributeError):
                pass
        return self.model_name

    async def generate(self, prompt: Sequence[int], *, stop: Sequence[int], sampling: SamplingParams) -> AsyncIterator[int]:
        self.last_stats = GenerationStats(prompt_tokens=len(prompt), prefilled_tokens=len(prompt))
        produced: list[int] = []
        stop_set = set(stop)
        stream = self._stream_openai(prompt, stop, sampling) if self.flavor == "openai" else self._stream_ollama(prompt, stop, sampling)
        finish: dict[str, Any] = {}
        async for tokens, done in stream:
            for token in tokens:
                produced.append(token)
                self.last_stats.completion_tokens += 1
                yield token
                if token in stop_set:
                    return
            if done is not None:
                finish = done
        # The server stopped without showing a stop token: say which one it was.
        reason = finish.get("finish_reason")
        stop_reason = finish.get("stop_reason")
        if isinstance(stop_reason, int) and stop_reason in stop_set:
            yield stop_reason
        elif reason == "stop":
            yield infer_stop_token(produced)

    async def _post_stream(self, path: str, payload: dict[str, Any]) -> AsyncIterator[str]:
        url = f"{self.base_url}{path}"
        try:
            async with self._client.stream("POST", url, json=payload) as response:
                if response.status_code >= 400:
                    body = (await response.aread()).decode("utf-8", "replace")[:500]
                    raise ModelError(f"{url} answered HTTP {response.status_code}: {body}")
                async for line in response.aiter_lines():
                    if line.strip():
                        yield line
        except httpx.HTTPError as exc:
            raise ModelError(f"could not reach the model server at {url}: {exc}") from exc

    async def _stream_openai(self, prompt: Sequence[int], stop: Sequence[int], sampling: SamplingParams) -> AsyncIterator[tuple[list[int], dict[str, Any] | None]]:
        payload: dict[str, Any] = {
            "prompt": list(prompt),
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens or max(1, self.context_window - len(prompt)),
            "stream": True,
            "stop_token_ids": list(stop),
            "skip_special_tokens": False,
            "include_stop_str_in_output": True,
            "return_token_ids": True,
        }
        model = await self._default_model()
        if model:
            payload["model"] = model
        if sampling.seed is not None:
            payload["seed"] = sampling.seed
        text_encoder = _TextToTokens()
        async for line in self._post_stream("/v1/completions", payload):
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
                choice = chunk["choices"][0]
            except (json.JSONDecodeError, KeyError, IndexError, TypeError):
                raise ModelError(f"malformed streaming chunk from the server: {data[:200]}") from None
            ids = choice.get("token_ids")
            tokens = [int(t) for t in ids] if isinstance(ids, list) else text_encoder.feed(choice.get("text") or "")
            done = choice if choice.get("finish_reason") else None
            if done is not None:
                tokens += text_encoder.flush()
            yield tokens, done

    async def _stream_ollama(self, prompt: Sequence[int], stop: Sequence[int], sampling: SamplingParams) -> AsyncIterator[tuple[list[int], dict[str, Any] | None]]:
        encoding = get_encoding()
        options: dict[str, Any] = {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stop": [encoding.decode([t]) for t in stop],
        }
        if sampling.max_tokens:
            options["num_predict"] = sampling.max_tokens
        if sampling.seed is not None:
            options["seed"] = sampling.seed
        payload = {"model": self.model_name or "gpt-oss:20b", "prompt": decode(prompt), "raw": True, "stream": True, "options": options}
        text_encoder = _TextToTokens()
        async for line in self._post_stream("/api/generate", payload):
            try:
                chunk = json.loads(line)
            except json.JSONDecodeError:
                raise ModelError(f"malformed streaming line from Ollama: {line[:200]}") from None
            if chunk.get("error"):
                raise ModelError(f"Ollama: {chunk['error']}")
            tokens = text_encoder.feed(chunk.get("response") or "")
            done = None
            if chunk.get("done"):
                tokens += text_encoder.flush()
                done = {"finish_reason": "length" if chunk.get("done_reason") == "length" else "stop"}
            yield tokens, done

    async def aclose(self) -> None:
        await self._client.aclose()
