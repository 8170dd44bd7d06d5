"""gpt-oss behind servers that render harmony themselves: Chat Completions and the Responses API.

Hosted gpt-oss (OpenRouter, Groq, Together, Fireworks, Cerebras, Azure) and the
chat endpoints of vLLM, Ollama and LM Studio take structured messages and
render the harmony prompt on their side; they never see our tokens. The loop,
the history and the parser all work on harmony tokens, so rather than give the
loop a second, message-level path this backend *translates at its edge*:

* **Prompt in.** The prompt the loop sends is parsed back into harmony
  messages with openai-harmony. Its preamble (the system and developer
  messages, with the tools as JSON schemas) cannot be recovered from tokens,
  so :meth:`Model.bind_preamble` hands the structured messages over when an
  :class:`~harmony_agent.Agent` builds them, keyed by their rendered tokens;
  the preamble a prompt starts with is looked up there.
* **Messages out.** Those messages become the API's own: user, assistant
  (reasoning, tool calls, answers) and tool results; function tools become
  the API's ``tools``. Built-in tools (python, browser), which such a server
  never puts in its system prompt, are offered as functions carrying
  harmony's own descriptions (``python`` takes ``code``; ``browser.search``
  becomes ``browser_search``), the namespaces' descriptions going into the
  instructions.
* **Reply in.** The structured reply (``reasoning_content``/``reasoning``,
  reasoning items, ``tool_calls``/``function_call`` items, the answer) is
  rendered into harmony tokens with openai-harmony's encoding, ending with
  ``<|call|>`` or ``<|return|>`` as gpt-oss would, so the loop, history,
  transcripts and events are the same as with any other backend.

Several tool calls in one reply are handed to the loop one at a time: the rest
wait for the prompt that extends this reply (the loop's next step) and are
answered from here without a request. What is lost against the raw-token
backends (the exact prompt, the trained built-in namespaces, our control of
KV reuse, token-by-token streaming) is said in the README.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any

from openai_harmony import Conversation, DeveloperContent, HarmonyError, Message, Role, SystemContent

from harmony_agent.harmony.encoding import END, RETURN, assistant_prefix, clean_message, get_encoding
from harmony_agent.models.base import GenerationStats, ModelError, SamplingParams
from harmony_agent.models.http import OpenAICompatibleModel

#: Environment variables read for the API key, first found wins.
API_KEY_VARIABLES = ("HARMONY_AGENT_API_KEY", "OPENAI_API_KEY")
#: How many preambles (one per agent configuration) a model remembers.
MAX_PREAMBLES = 32
#: Tokens kept free of a known window: the server writes its own system message and tool list, which may
#: come out longer than the prompt we count, and asking for more than fits is an HTTP 400.
RENDER_SLACK = 256
_NAME_OK = re.compile(r"[^A-Za-z0-9_-]")


class _Tools:
    """The API's function list for one preamble, and the way back from a function name to a recipient."""

    def __init__(self, system: SystemContent | None, developer: DeveloperContent | None) -> None:
        self.specs: list[dict[str, Any]] = []
        self.recipient_of: dict[str, str] = {}
        self.name_of: dict[str, str] = {}
        self.notes: list[str] = []
        for namespace in (developer.tools or {}).values() if developer else ():
            for tool in namespace.tools:
                self._add(tool.name, f"{namespace.name}.{tool.name}", tool.description, tool.parameters)
        for namespace in (system.tools or {}).values() if system else ():
            if not namespace.tools:  # python: one function taking the code
                key = "code" if namespace.name == "python" else "input"
                schema = {"type": "object", "properties": {key: {"type": "string"}}, "required": [key]}
                self._add(namespace.name, namespace.name, namespace.description or "", schema)
                continue
            if namespace.description:
                self.notes.append(f"## {namespace.name}\n\n{namespace.description}")
            for tool in namespace.tools:
                name = f"{namespace.name}_{tool.name}"
                self._add(name, f"{namespace.name}.{tool.name}", tool.description, tool.parameters)

    def _add(self, name: str, recipient: str, description: str, parameters: dict[str, Any] | None) -> None:
        name = _NAME_OK.sub("_", name)
        if name in self.recipient_of:
            raise ModelError(f"two tools would both be offered to the server as the function {name!r}")
        self.recipient_of[name] = recipient
        self.name_of[recipient] = name
        self.specs.append(
            {"name": name, "description": description, "parameters": parameters or {"type": "object", "properties": {}}}
        )

    def arguments(self, recipient: str, text: str) -> str:
        """A call's harmony content as the function's JSON arguments (python's code is wrapped)."""
        if recipient == "python" and self.recipient_of.get("python") == "python":
            return json.dumps({"code": text})
        return text

    def call_message(self, name: str, arguments: str) -> Message:
        """The harmony message of a call the server returned: built-ins as gpt-oss writes them."""
        recipient = self.recipient_of.get(name) or self.recipient_of.get(name.removeprefix("functions.")) or name
        if "." not in recipient and recipient not in self.recipient_of.values():
            recipient = f"functions.{recipient}"
        if recipient == "python":
            try:
                parsed = json.loads(arguments)
            except ValueError:
                parsed = None
            code = parsed.get("code") if isinstance(parsed, dict) else None
            text = code if isinstance(code, str) else arguments
            message = Message.from_role_and_content(Role.ASSISTANT, text).with_channel("analysis")
            return message.with_recipient("python").with_content_type("code")
        channel = "commentary" if recipient.startswith("functions.") else "analysis"
        message = Message.from_role_and_content(Role.ASSISTANT, arguments or "{}").with_channel(channel)
        return message.with_recipient(recipient).with_content_type("<|constrain|>json")


def _text(message: Message) -> str:
    return "".join(getattr(part, "text", "") or "" for part in message.content)


def api_key_from_environment(environ: dict[str, str]) -> str | None:
    """The API key: ``HARMONY_AGENT_API_KEY``, else ``OPENAI_API_KEY`` (None when neither is set)."""
    for name in API_KEY_VARIABLES:
        if environ.get(name):
            return environ[name]
    return None


class _Conversation:
    """A prompt as the API's pieces: instructions, effort, tools, and the turns as harmony messages."""

    def __init__(self, preamble: list[Message], messages: list[Message]) -> None:
        system = next((p for m in preamble for p in m.content if isinstance(p, SystemContent)), None)
        developer = next((p for m in preamble for p in m.content if isinstance(p, DeveloperContent)), None)
        self.tools = _Tools(system, developer)
        effort = system.reasoning_effort if system is not None else None
        self.effort = str(effort.value).lower() if effort is not None else None
        parts = [developer.instructions] if developer is not None and developer.instructions else []
        if self.tools.notes:
            parts.append("# Tools\n\n" + "\n\n".join(self.tools.notes))
        self.instructions = "\n\n".join(parts) or None
        self.messages = messages

    def turns(self) -> list[tuple[str, Message, str | None]]:
        """Each message with its kind (user, reasoning, call, answer, result) and the call id it belongs to."""
        out: list[tuple[str, Message, str | None]] = []
        open_calls: list[tuple[str, str]] = []  # (recipient, id), oldest first
        for index, message in enumerate(self.messages):
            role = message.author.role
            if role == Role.USER:
                out.append(("user", message, None))
            elif role == Role.ASSISTANT and message.recipient and message.recipient != "assistant":
                call_id = f"call_{index}"
                open_calls.append((message.recipient, call_id))
                out.append(("call", message, call_id))
            elif role == Role.ASSISTANT:
                out.append(("reasoning" if message.channel == "analysis" else "answer", message, None))
            elif role == Role.TOOL:
                author = message.author.name or ""
                match = next((c for c in reversed(open_calls) if c[0] == author), None)
                match = match or (open_calls[-1] if open_calls else None)
                if match is None:  # a result with no call before it: say it as the user would
                    out.append(("user", Message.from_role_and_content(Role.USER, f"[{author}] {_text(message)}"), None))
                    continue
                open_calls.remove(match)
                out.append(("result", message, match[1]))
        return out


class ServerRenderedModel(OpenAICompatibleModel):
    """A server that renders harmony itself, spoken to through ``api`` (``chat`` or ``responses``).

    Retries, time-outs, the API key header and ``/v1/models`` work as for
    :class:`OpenAICompatibleModel`. See the module docstring for the design.
    """

    def __init__(self, base_url: str, *, api: str = "chat", model: str | None = None, **kwargs: Any) -> None:
        if api not in ("chat", "responses"):
            raise ValueError("api must be 'chat' or 'responses'")
        super().__init__(base_url, model=model, **kwargs)
        self.api = api
        self.name = f"openai-{api}:{self.base_url}" + (f"/{model}" if model else "")
        self._preambles: OrderedDict[tuple[int, ...], list[Message]] = OrderedDict()
        self._queued: OrderedDict[tuple[int, ...], list[Message]] = OrderedDict()

    def _max_tokens(self, prompt_len: int, sampling: SamplingParams) -> int | None:
        """As for raw completions, less :data:`RENDER_SLACK`: the server's rendering of the prompt is not ours."""
        window = self._server_window or self._user_window
        if window is None:
            return sampling.max_tokens
        room = min(window, self.context_window) - prompt_len - RENDER_SLACK
        if room < 1:
            raise ModelError(
                f"the prompt ({prompt_len} tokens, and the server's own rendering adds some) fills the model "
                f"server's context window ({window} tokens)"
            )
        return room if sampling.max_tokens is None else min(sampling.max_tokens, room)

    def bind_preamble(self, preamble: Sequence[Message]) -> None:
        """Remember a conversation's structured preamble under the tokens History renders it as."""
        messages = [clean_message(m) for m in preamble]
        key = tuple(get_encoding().render_conversation(Conversation.from_messages(messages)))
        self._preambles[key] = messages
        self._preambles.move_to_end(key)
        while len(self._preambles) > MAX_PREAMBLES:
            self._preambles.popitem(last=False)

    # -- the prompt, taken apart ---------------------------------------------------------

    def _conversation(self, prompt: Sequence[int]) -> _Conversation:
        tail = assistant_prefix()
        if tuple(prompt[-len(tail) :]) != tail:
            raise ModelError("the prompt does not end with <|start|>assistant: this backend continues conversations")
        found = [key for key in self._preambles if tuple(prompt[: len(key)]) == key]
        if not found:
            raise ModelError(
                f"{self.name} needs the conversation's system and developer messages as structured data: "
                "run it through an Agent (which hands them over), or call model.bind_preamble(messages) first"
            )
        key = max(found, key=len)
        body = list(prompt[len(key) : len(prompt) - len(tail)])
        return _Conversation(self._preambles[key], _parse(body))

    # -- generation ----------------------------------------------------------------------

    async def generate(
        self, prompt: Sequence[int], *, stop: Sequence[int], sampling: SamplingParams
    ) -> AsyncIterator[int]:
        self.last_stats = stats = GenerationStats(prompt_tokens=len(prompt), prefilled_tokens=0)
        queued = self._take_queued(prompt)
        if queued is not None:
            messages, finished = [queued[0]], True
            self._queue(list(prompt), messages, queued[1:])
        else:
            if not self._started:
                await self.start()
            conversation = self._conversation(prompt)
            max_tokens = self._max_tokens(len(prompt), sampling)
            started = time.perf_counter()
            if self.api == "chat":
                payload = _chat_payload(conversation, sampling, max_tokens, self.model_name)
                reply = await self._post("/v1/chat/completions", payload)
                messages, finished = _from_chat(reply, conversation.tools)
            else:
                payload = _responses_payload(conversation, sampling, max_tokens, self.model_name)
                reply = await self._post("/v1/responses", payload)
                messages, finished = _from_responses(reply, conversation.tools)
            stats.prefill_seconds = time.perf_counter() - started
            self._take_usage(_usage(reply))
            calls = [m for m in messages if m.recipient]
            if len(calls) > 1:  # one call a step: the rest answer the steps that follow
                first = messages.index(calls[0])
                messages = messages[: first + 1]
                self._queue(list(prompt), messages, calls[1:])
        tokens = _render(messages, finished)
        stats.completion_tokens = len(tokens)
        for token in tokens:
            yield token

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        async with self._open("POST", path, payload) as response:
            body = await response.aread()
        try:
            reply = json.loads(body)
        except ValueError:
            raise ModelError(
                f"{self.base_url}{path} answered with something that is not JSON: {body[:200]!r}"
            ) from None
        if not isinstance(reply, dict):
            raise ModelError(f"{self.base_url}{path} answered with JSON that is not an object: {body[:200]!r}")
        if isinstance(reply.get("error"), dict | str) and reply.get("error"):
            error = reply["error"]
            raise ModelError(
                f"{self.base_url}{path} reported an error: {error.get('message', error) if isinstance(error, dict) else error}"
            )
        return reply

    def _queue(self, prompt: list[int], messages: list[Message], rest: list[Message]) -> None:
        if not rest:
            return
        key = tuple(prompt + _render(messages, True))
        self._queued[key] = rest
        while len(self._queued) > MAX_PREAMBLES:
            self._queued.popitem(last=False)

    def _take_queued(self, prompt: Sequence[int]) -> list[Message] | None:
        for key in list(self._queued):
            if len(prompt) > len(key) and tuple(prompt[: len(key)]) == key:
                return self._queued.pop(key)
        return None

    def _take_usage(self, usage: dict[str, Any]) -> None:
        """The server's count: prompt tokens (its own rendering) and those its cache served."""
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        cached = cached if isinstance(cached, int) and cached >= 0 else 0
        if isinstance(prompt, int) and prompt >= cached:
            self.last_stats.cached_tokens = cached
            self.last_stats.prefilled_tokens = prompt - cached


def _parse(tokens: list[int]) -> list[Message]:
    """The conversation after the preamble as harmony messages (message by message when the whole fails)."""
    encoding = get_encoding()
    try:
        return list(encoding.parse_messages_from_completion_tokens(tokens, role=None))
    except HarmonyError:
        pass
    messages: list[Message] = []
    starts = [i for i, t in enumerate(tokens) if t == assistant_prefix()[0]] + [len(tokens)]
    for begin, end in itertools.pairwise(starts):
        try:
            messages.extend(encoding.parse_messages_from_completion_tokens(tokens[begin:end], role=None))
        except HarmonyError as exc:
            raise ModelError(f"a message of the conversation could not be read back for the server: {exc}") from None
    return messages


def _usage(reply: dict[str, Any]) -> dict[str, Any]:
    usage = reply.get("usage")
    return usage if isinstance(usage, dict) else {}


def _render(messages: list[Message], finished: bool) -> list[int]:
    """The reply as the tokens gpt-oss would have written after ``<|start|>assistant``."""
    encoding = get_encoding()
    tokens: list[int] = []
    for message in messages:
        tokens += encoding.render(message)
    prefix = list(assistant_prefix())
    tokens = tokens[len(prefix) :] if tokens[: len(prefix)] == prefix else tokens
    if not finished:  # cut short (max tokens): no end token, so the loop says which budget
        return tokens[:-1] if tokens else tokens
    if tokens and tokens[-1] == END:
        tokens[-1] = RETURN
    return tokens


def _assistant(text: str, channel: str) -> Message:
    return Message.from_role_and_content(Role.ASSISTANT, text).with_channel(channel)


# -- Chat Completions -------------------------------------------------------------------------


def _chat_payload(
    conversation: _Conversation, sampling: SamplingParams, max_tokens: int | None, model: str | None
) -> dict[str, Any]:
    tools = conversation.tools
    messages: list[dict[str, Any]] = []
    if conversation.instructions:
        messages.append({"role": "system", "content": conversation.instructions})
    reasoning: list[str] = []
    for kind, message, call_id in conversation.turns():
        text = _text(message)
        if kind == "user":
            messages.append({"role": "user", "content": text})
        elif kind == "reasoning":
            reasoning.append(text)
        elif kind == "result":
            messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
        else:
            entry: dict[str, Any] = {"role": "assistant", "content": text if kind == "answer" else None}
            if kind == "call":
                name = tools.name_of.get(message.recipient or "", (message.recipient or "").removeprefix("functions."))
                arguments = tools.arguments(message.recipient or "", text)
                entry["tool_calls"] = [
                    {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                ]
            if reasoning:
                entry["reasoning"] = "\n".join(reasoning)
                reasoning = []
            messages.append(entry)
    payload: dict[str, Any] = {
        "messages": messages,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "stream": False,
    }
    if tools.specs:
        payload["tools"] = [{"type": "function", "function": spec} for spec in tools.specs]
        payload["tool_choice"] = "auto"
    for key, value in (
        ("model", model),
        ("max_tokens", max_tokens),
        ("seed", sampling.seed),
        ("reasoning_effort", conversation.effort),
    ):
        if value is not None:
            payload[key] = value
    return payload


def _from_chat(reply: dict[str, Any], tools: _Tools) -> tuple[list[Message], bool]:
    """A Chat Completions reply as harmony messages, and whether it finished (not cut at its length)."""
    choices = reply.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    message = choice.get("message") if choice is not None else None
    if choice is None or not isinstance(message, dict):
        raise ModelError(f"malformed Chat Completions reply (no choices[0].message): {json.dumps(reply)[:300]}")
    out: list[Message] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        out.append(_assistant(reasoning, "analysis"))
    content = message.get("content")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise ModelError(f"malformed Chat Completions reply (tool_calls is not a list): {json.dumps(message)[:300]}")
    if isinstance(content, str) and content:
        out.append(_assistant(content, "commentary" if calls else "final"))
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(name, str) or not name:
            raise ModelError(f"malformed tool call in the Chat Completions reply: {json.dumps(call)[:300]}")
        arguments = function.get("arguments")
        arguments = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
        out.append(tools.call_message(name, arguments))
    if not out:
        out.append(_assistant("", "final"))
    return out, choice.get("finish_reason") != "length"


# -- Responses --------------------------------------------------------------------------------


def _responses_payload(
    conversation: _Conversation, sampling: SamplingParams, max_tokens: int | None, model: str | None
) -> dict[str, Any]:
    tools = conversation.tools
    items: list[dict[str, Any]] = []
    for kind, message, call_id in conversation.turns():
        text = _text(message)
        if kind == "user":
            items.append({"type": "message", "role": "user", "content": text})
        elif kind == "reasoning":
            items.append({"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": text}]})
        elif kind == "answer":
            items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]})
        elif kind == "call":
            name = tools.name_of.get(message.recipient or "", (message.recipient or "").removeprefix("functions."))
            arguments = tools.arguments(message.recipient or "", text)
            items.append({"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments})
        else:
            items.append({"type": "function_call_output", "call_id": call_id, "output": text})
    payload: dict[str, Any] = {
        "input": items,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "store": False,
        "stream": False,
    }
    if tools.specs:
        payload["tools"] = [{"type": "function", **spec} for spec in tools.specs]
    for key, value in (
        ("model", model),
        ("instructions", conversation.instructions),
        ("max_output_tokens", max_tokens),
        ("reasoning", {"effort": conversation.effort} if conversation.effort else None),
    ):
        if value is not None:
            payload[key] = value
    return payload


def _item_text(parts: Any, kinds: tuple[str, ...]) -> str:
    if not isinstance(parts, list):
        return ""
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") in kinds)


def _from_responses(reply: dict[str, Any], tools: _Tools) -> tuple[list[Message], bool]:
    """A Responses reply's output items as harmony messages, and whether it finished."""
    output = reply.get("output")
    if not isinstance(output, list):
        raise ModelError(f"malformed Responses reply (no output list): {json.dumps(reply)[:300]}")
    out: list[Message] = []
    for item in output:
        if not isinstance(item, dict):
            raise ModelError(f"malformed output item in the Responses reply: {json.dumps(item)[:300]}")
        kind = item.get("type")
        if kind == "reasoning":
            text = _item_text(item.get("content"), ("reasoning_text",)) or _item_text(
                item.get("summary"), ("summary_text",)
            )
            if text:
                out.append(_assistant(text, "analysis"))
        elif kind == "message":
            text = _item_text(item.get("content"), ("output_text", "text"))
            out.append(_assistant(text, "final"))
        elif kind == "function_call":
            name, arguments = item.get("name"), item.get("arguments")
            if not isinstance(name, str) or not name:
                raise ModelError(f"malformed function_call in the Responses reply: {json.dumps(item)[:300]}")
            out.append(tools.call_message(name, arguments if isinstance(arguments, str) else json.dumps(arguments)))
    calls = [m for m in out if m.recipient]
    if calls:  # an answer written beside a call is a note to the user before it, as gpt-oss does
        out = [m.with_channel("commentary") if m.channel == "final" else m for m in out]
    if not out:
        out.append(_assistant("", "final"))
    details = reply.get("incomplete_details")
    cut = reply.get("status") == "incomplete" and isinstance(details, dict) and "token" in str(details.get("reason"))
    return out, not cut
