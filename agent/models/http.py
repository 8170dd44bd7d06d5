"""Models served over HTTP: vLLM, llama.cpp's server, Ollama.

This is the scale-out path for when one GPU is not enough. We always send the
rendered harmony prompt ourselves (raw completions, never a chat template), so
the server sees exactly the tokens the loop keeps:

* ``openai`` flavour: ``POST {base}/v1/completions`` with the prompt as token
  ids and ``stop_token_ids`` (vLLM; llama.cpp's server accepts token prompts
  too). Generated token ids are read from ``token_ids`` when the server
  returns them (vLLM's ``return_token_ids``), otherwise the text is encoded.
  ``stream_options.include_usage`` asks for the server's own count of cached
  prompt tokens, and ``GET /v1/models`` for its context window.
* ``ollama`` flavour: ``POST {base}/api/generate`` with ``raw: true`` and the
  prompt as text.

Real servers restart, shed load and time out. Requests that fail before any
token arrived (connection refused or dropped, HTTP 429 and 5xx) are retried a
bounded number of times with exponential backoff, honouring ``Retry-After``;
each retry is recorded in ``last_stats.retries`` and passed to
``Model.on_retry``. Once tokens have streamed, a failure ends the generation
with a :class:`ModelError`: the caller has already seen those tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import random
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httpx

from harmony_agent.harmony.encoding import decode, encode_completion, get_encoding
from harmony_agent.models.base import GenerationStats, Model, ModelError, Retry, SamplingParams, infer_stop_token
from harmony_agent.models.checkpoints import NO_GPU_ROUTES

#: HTTP statuses that mean "try again later" rather than "this request is wrong".
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Failures before a response that a new connection may cure (refused, reset, dropped).
RETRY_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class ServerStatusError(ModelError):
    """The server answered with an HTTP error status (kept in ``status``)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


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


@dataclass
class _Chunk:
    """One parsed streaming message: new tokens, the finish record, the usage record."""

    tokens: list[int]
    finish: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None


def _error_text(payload: Any) -> str | None:
    """The message of an error object as vLLM, llama.cpp, Ollama and OpenAI write it, or None."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    if isinstance(error, str) and error:
        return error
    if payload.get("object") == "error":
        return str(payload.get("message") or payload)
    return None


def _body_message(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    try:
        message = _error_text(json.loads(text))
    except ValueError:
        message = None
    return (message or text).strip()[:500]


def _record(text: str, server: str) -> dict[str, Any]:
    """One streamed JSON record; an error record raises with the server's own message."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        raise ModelError(f"malformed streaming chunk from {server}: {text[:200]}") from None
    message = _error_text(record)
    if message is not None:
        raise ModelError(f"{server} reported an error: {message}")
    if not isinstance(record, dict):
        raise ModelError(f"malformed streaming chunk from {server}: {text[:200]}")
    return record


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), if any."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAICompatibleModel(Model):
    """A raw-completions server. ``base_url`` may end in ``/v1`` or not.

    ``timeout`` bounds every wait on the server (connecting, the first token,
    the gap between chunks). ``retries`` failed attempts are retried, waiting
    ``backoff`` × 2ⁿ seconds (with jitter, at most ``max_backoff``) or what
    ``Retry-After`` asks when it asks for no more than ``max_backoff``.
    ``context_window`` caps the window; the server's own ``max_model_len``
    (learned in :meth:`start`) caps it too.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        flavor: str = "openai",
        api_key: str | None = None,
        timeout: float = 600.0,
        context_window: int | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        super().__init__()
        if flavor not in ("openai", "ollama"):
            raise ValueError("flavor must be 'openai' or 'ollama'")
        if retries < 0 or backoff < 0 or max_backoff < 0 or timeout <= 0:
            raise ValueError("retries, backoff and max_backoff must be >= 0 and timeout > 0")
        base = base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        self.base_url = base
        self.flavor = flavor
        self.model_name = model
        self.name = f"{flavor}:{base}" + (f"/{model}" if model else "")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._user_window = context_window
        self._server_window: int | None = None
        if context_window:
            self.context_window = context_window
        self._started = False
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        # One client per event loop: an httpx client's connections belong to the loop that opened them.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    # -- connections -------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(timeout=self._timeout, headers=self._headers)
            self._clients[loop] = client
        return client

    def _note_retry(self, attempt: int, reason: str, retry_after: float | None) -> float:
        delay = min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.75, 1.0)
        if retry_after is not None:
            delay = retry_after
        retry = Retry(attempt=attempt + 1, reason=reason, delay_s=delay)
        self.last_stats.retries.append(retry)
        if self.on_retry is not None:
            self.on_retry(retry)
        return delay

    @contextlib.asynccontextmanager
    async def _open(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """A response with a 2xx status, its body still streaming; retried as the module says."""
        url = f"{self.base_url}{path}"
        client = self._client()
        attempt = 0
        while True:
            retry_after: float | None = None
            status: int | None = None
            try:
                response = await client.send(client.build_request(method, url, json=payload), stream=True)
            except RETRY_ERRORS as exc:
                server = "Ollama" if self.flavor == "ollama" else "the model server"
                reason = f"could not reach {server} at {url}: {type(exc).__name__}: {exc}"
            except httpx.TimeoutException as exc:
                raise ModelError(
                    f"the model server at {url} did not answer within {self._timeout.read:g} s ({type(exc).__name__})"
                ) from exc
            except httpx.HTTPError as exc:
                raise ModelError(f"request to the model server at {url} failed: {type(exc).__name__}: {exc}") from exc
            else:
                if response.status_code < 400:
                    try:
                        yield response
                    finally:
                        await response.aclose()
                    return
                try:
                    body = await response.aread()
                except httpx.HTTPError:
                    body = b""
                finally:
                    await response.aclose()
                status = response.status_code
                reason = f"{url} answered HTTP {status}: {_body_message(body)}"
                if response.status_code not in RETRY_STATUSES:
                    raise ServerStatusError(reason, response.status_code)
                retry_after = _retry_after(response.headers)
                if retry_after is not None and retry_after > self.max_backoff:
                    raise ServerStatusError(
                        f"{reason} (Retry-After {retry_after:g} s is longer than max_backoff {self.max_backoff:g} s)",
                        response.status_code,
                    )
            if attempt >= self.retries:
                message = reason + (f" (gave up after {attempt + 1} attempts)" if attempt else "")
                if status is None:  # nothing listens there: say what works without a server of one's own
                    message += f". {self._not_running_hint()}"
                raise ServerStatusError(message, status) if status else ModelError(message)
            await asyncio.sleep(self._note_retry(attempt, reason, retry_after))
            attempt += 1

    # -- the server's limits -------------------------------------------------------------

    async def start(self) -> None:
        """Ask the server which model it serves and its context window (``/v1/models``).

        vLLM reports ``max_model_len``; asking for more tokens than that is an
        HTTP 400, so it becomes :attr:`context_window` (or caps the window
        given to the constructor). A server without ``/v1/models`` keeps the
        defaults; one that cannot be reached is a :class:`ModelError`.
        """
        if self.flavor == "ollama":
            await self._check_ollama()
            self._started = True
            return
        try:
            async with self._open("GET", "/v1/models") as response:
                listing = json.loads(await response.aread())
        except ServerStatusError as exc:
            if exc.status in (404, 405):  # no model listing here: keep the defaults
                self._started = True
                return
            raise
        except ValueError:
            listing = None
        data = listing.get("data") if isinstance(listing, dict) else None
        entries = [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []
        entry = next((e for e in entries if e.get("id") == self.model_name), entries[0] if entries else None)
        if entry is not None:
            if self.model_name is None and isinstance(entry.get("id"), str):
                self.model_name = entry["id"]
            window = entry.get("max_model_len")
            if isinstance(window, int) and window > 0:
                self._server_window = window
                self.context_window = min(window, self._user_window or window)
        self._started = True

    async def _check_ollama(self) -> None:
        """Ollama answers, and has the model (``/api/tags``): checked before any tool starts, as ``/v1/models``
        is for the other servers, so a user without Ollama hears how to start it rather than a failed first step.
        A server without the listing (404) is taken at its word."""
        try:
            async with self._open("GET", "/api/tags") as response:
                listing = json.loads(await response.aread())
        except ServerStatusError as exc:
            if exc.status in (404, 405):
                return
            raise
        except ValueError:
            return
        models = listing.get("models") if isinstance(listing, dict) else None
        if not isinstance(models, list) or not self.model_name:
            return
        names = {m.get("name") for m in models if isinstance(m, dict)} | {
            m.get("model") for m in models if isinstance(m, dict)
        }
        wanted = self.model_name if ":" in self.model_name else f"{self.model_name}:latest"
        if self.model_name not in names and wanted not in names:
            raise ModelError(
                f"Ollama at {self.base_url} has no model {self.model_name!r}: fetch it with "
                f"`ollama pull {self.model_name}`, or pick another model with --model "
                "(`harmony-agent doctor` checks this machine's setup)"
            )

    def _not_running_hint(self) -> str:
        """What to do when nothing listens at the server's address."""
        if self.flavor == "ollama":
            pull = f" and fetch the model with `ollama pull {self.model_name}`" if self.model_name else ""
            return (
                f"Is Ollama running? Start it with `ollama serve`{pull}, or pick another model with --model "
                f"(`harmony-agent doctor` checks this machine's setup): {NO_GPU_ROUTES}"
            )
        return f"Is the server running? Without one: {NO_GPU_ROUTES}"

    def _max_tokens(self, prompt_len: int, sampling: SamplingParams) -> int | None:
        """What to ask for: never past the known window; None (the server's default) when none is known."""
        window = self._server_window or self._user_window
        if window is None:
            return sampling.max_tokens
        room = min(window, self.context_window) - prompt_len
        if room < 1:
            raise ModelError(
                f"the prompt ({prompt_len} tokens) fills the model server's context window ({window} tokens)"
            )
        return room if sampling.max_tokens is None else min(sampling.max_tokens, room)

    # -- generation ----------------------------------------------------------------------

    async def generate(
        self, prompt: Sequence[int], *, stop: Sequence[int], sampling: SamplingParams
    ) -> AsyncIterator[int]:
        self.last_stats = stats = GenerationStats(prompt_tokens=len(prompt), prefilled_tokens=len(prompt))
        if not self._started:
            await self.start()
        max_tokens = self._max_tokens(len(prompt), sampling)
        if self.flavor == "openai":
            path, payload, parse = (
                "/v1/completions",
                self._openai_payload(prompt, stop, sampling, max_tokens),
                self._parse_openai,
            )
        else:
            path, payload, parse = (
                "/api/generate",
                self._ollama_payload(prompt, stop, sampling, max_tokens),
                self._parse_ollama,
            )
        started = time.perf_counter()
        produced: list[int] = []
        stop_set = set(stop)
        finish: dict[str, Any] = {}
        stopped = False
        text_encoder = _TextToTokens()
        # httpx annotates aiter_lines as an AsyncIterator; it is an async generator, which aclosing needs.
        async with (
            self._open("POST", path, payload) as response,
            contextlib.aclosing(cast("AsyncGenerator[str, None]", response.aiter_lines())) as lines,
        ):
            try:
                async for line in lines:
                    if not line.strip():
                        continue
                    chunk = parse(line, text_encoder)
                    if chunk is None:  # the end of the stream
                        break
                    if chunk.usage:
                        self._take_usage(chunk.usage)
                    if chunk.finish is not None:
                        finish = chunk.finish
                    if stopped:
                        # After our stop token only the finish and usage records are of use;
                        # a server that goes on generating is cut off here.
                        if chunk.tokens:
                            break
                        continue
                    for token in chunk.tokens:
                        if not produced:
                            stats.prefill_seconds = time.perf_counter() - started
                        produced.append(token)
                        stats.completion_tokens += 1
                        yield token
                        if token in stop_set:
                            stopped = True
                            break
            except httpx.TimeoutException as exc:
                raise ModelError(
                    f"the model server stopped sending after {len(produced)} tokens: no data for {self._timeout.read:g} s"
                ) from exc
            except httpx.HTTPError as exc:
                raise ModelError(
                    f"the model server's stream broke after {len(produced)} tokens: {type(exc).__name__}: {exc}"
                ) from exc
        if stopped:
            return
        # The server stopped without showing a stop token: say which one it was.
        reason = finish.get("finish_reason")
        stop_reason = finish.get("stop_reason")
        if isinstance(stop_reason, int) and stop_reason in stop_set:
            yield stop_reason
        elif reason == "stop":
            yield infer_stop_token(produced)

    def _take_usage(self, usage: dict[str, Any]) -> None:
        """Fill prefilled/cached from the server's own count (``prompt_tokens_details.cached_tokens``)."""
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        prompt = usage.get("prompt_tokens")
        if isinstance(cached, int) and cached >= 0:
            total = prompt if isinstance(prompt, int) and prompt >= cached else self.last_stats.prompt_tokens
            self.last_stats.cached_tokens = cached
            self.last_stats.prefilled_tokens = max(0, total - cached)

    def _openai_payload(
        self, prompt: Sequence[int], stop: Sequence[int], sampling: SamplingParams, max_tokens: int | None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "prompt": list(prompt),
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
            "stop_token_ids": list(stop),
            "skip_special_tokens": False,
            "include_stop_str_in_output": True,
            "return_token_ids": True,
        }
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        if self.model_name:
            payload["model"] = self.model_name
        if sampling.seed is not None:
            payload["seed"] = sampling.seed
        return payload

    @staticmethod
    def _parse_openai(line: str, text_encoder: _TextToTokens) -> _Chunk | None:
        if not line.startswith("data:"):
            return _Chunk([])  # SSE comments and event names carry nothing for us
        data = line[5:].strip()
        if data == "[DONE]":
            return None
        chunk = _record(data, "the model server")
        if not isinstance(chunk.get("choices", []), list):
            raise ModelError(f"malformed streaming chunk from the model server: {data[:200]}")
        usage = chunk.get("usage") if isinstance(chunk.get("usage"), dict) else None
        choices = chunk.get("choices") or []
        if not choices:  # the usage record comes with no choices
            return _Chunk([], usage=usage)
        choice = choices[0]
        if not isinstance(choice, dict):
            raise ModelError(f"malformed streaming chunk from the model server: {data[:200]}")
        ids = choice.get("token_ids")
        try:
            tokens = [int(t) for t in ids] if isinstance(ids, list) else text_encoder.feed(choice.get("text") or "")
        except (TypeError, ValueError):
            raise ModelError(f"malformed token ids from the server: {data[:200]}") from None
        finish = choice if choice.get("finish_reason") else None
        if finish is not None:
            tokens += text_encoder.flush()
        return _Chunk(tokens, finish=finish, usage=usage)

    def _ollama_payload(
        self, prompt: Sequence[int], stop: Sequence[int], sampling: SamplingParams, max_tokens: int | None
    ) -> dict[str, Any]:
        encoding = get_encoding()
        options: dict[str, Any] = {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stop": [encoding.decode([t]) for t in stop],
        }
        if max_tokens:
            options["num_predict"] = max_tokens
        if sampling.seed is not None:
            options["seed"] = sampling.seed
        return {
            "model": self.model_name or "gpt-oss:20b",
            "prompt": decode(prompt),
            "raw": True,
            "stream": True,
            "options": options,
        }

    @staticmethod
    def _parse_ollama(line: str, text_encoder: _TextToTokens) -> _Chunk | None:
        chunk = _record(line, "Ollama")
        tokens = text_encoder.feed(chunk.get("response") or "")
        if not chunk.get("done"):
            return _Chunk(tokens)
        tokens += text_encoder.flush()
        return _Chunk(tokens, finish={"finish_reason": "length" if chunk.get("done_reason") == "length" else "stop"})

    async def aclose(self) -> None:
        """Close the client of the running loop; clients of loops that have closed are dropped.

        Clients of other loops still running are left alone: another session
        may be streaming through them, and it closes its own.
        """
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
        for loop in [loop for loop in list(self._clients.keys()) if loop.is_closed()]:
            self._clients.pop(loop, None)
