"""``POST /v1/chat/completions``: the agent for clients that speak Chat Completions.

Most of the ecosystem (LangChain's default ``ChatOpenAI``, openai-agents'
``OpenAIChatCompletionsModel``, LiteLLM, Open WebUI, Continue, Aider) speaks
this older API. Each request carries the whole conversation; its messages
become the same entries as a stateless Responses request's items
(``responses_input.py``), so a request that extends a conversation the
server holds continues it in its session, and any other is rebuilt.

A turn runs exactly as for the Responses API, into a ResponseBuilder; this
module reads the builder's output items as one assistant message (answer
text in ``content``, reasoning in ``reasoning_content`` as vLLM and Ollama
give it for gpt-oss, the client's function calls in ``tool_calls``) and its
events as ``chat.completion.chunk`` deltas. The server's built-in tools run
server-side and are not shown; only the client's functions come back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harmony_agent.server.approvals import Approvals
from harmony_agent.server.conversations import AgentSpec, ConversationStore, Plan, ServerConfig, plan_stateless
from harmony_agent.server.protocol import (
    ClientRequest,
    FunctionToolSpec,
    RequestError,
    ResponseBuilder,
    ResponsesRequest,
)
from harmony_agent.server.responses_input import Entry, content_text, output_text, split
from harmony_agent.server.turns import sse_bytes

EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high"}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(ClientRequest):
    """The fields of a Chat Completions request this server honours (others are accepted and ignored)."""

    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    n: int = Field(default=1, ge=1, le=1)

    def functions(self) -> list[FunctionToolSpec]:
        """The client's functions (none with ``tool_choice: "none"``, so the model cannot call them)."""
        if self.tool_choice == "none":
            return []
        specs = []
        for tool in self.tools or []:
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
                raise RequestError('each tool must be {"type": "function", "function": {"name": ..., ...}}')
            try:
                specs.append(FunctionToolSpec.model_validate({"type": "function", **function}))
            except ValidationError as exc:
                raise RequestError(
                    f"invalid function tool {function.get('name')!r}: {exc.errors()[0]['msg']}"
                ) from None
        return specs

    def spec(self) -> tuple[AgentSpec, list[Entry]]:
        """The agent the request asks for, and its messages as entries."""
        instructions, entries = chat_entries(self.messages)
        effort = EFFORTS[self.reasoning_effort] if self.reasoning_effort else "medium"
        max_tokens = self.max_completion_tokens or self.max_tokens
        spec = AgentSpec("\n\n".join(instructions) or None, effort, [], self.functions(), max_tokens)
        return spec, entries

    def as_responses_request(self) -> ResponsesRequest:
        """What the ResponseBuilder reports its response against (the builder's own bookkeeping)."""
        return ResponsesRequest.model_validate(
            {"input": "", "store": False, "max_output_tokens": self.max_completion_tokens or self.max_tokens}
        )


def chat_entries(messages: list[dict[str, Any]]) -> tuple[list[str], list[Entry]]:
    """System and developer texts, and the other messages as conversation entries."""
    instructions: list[str] = []
    entries: list[Entry] = []
    for message in messages:
        if not isinstance(message, dict):
            raise RequestError("each message must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            instructions.append(content_text(message.get("content")))
        elif role == "user":
            entries.append(Entry("user", content_text(message.get("content"))))
        elif role == "assistant":
            entries += _assistant_entries(message)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                raise RequestError("a tool message needs its tool_call_id")
            entries.append(Entry("output", output_text(message.get("content")), call_id=call_id))
        else:
            raise RequestError(f"a message's role must be system, developer, user, assistant or tool, not {role!r}")
    return instructions, entries


def _assistant_entries(message: dict[str, Any]) -> list[Entry]:
    entries: list[Entry] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        entries.append(Entry("reasoning", reasoning))
    calls = message.get("tool_calls") or []
    text = content_text(message.get("content"))
    if text:
        entries.append(Entry("assistant", text, "commentary" if calls else "final"))
    for tool_call in calls:
        function = tool_call.get("function") if isinstance(tool_call, dict) else None
        if not isinstance(function, dict) or not isinstance(tool_call.get("id"), str):
            raise RequestError("each tool_call needs an id and a function with name and arguments")
        name, arguments = function.get("name"), function.get("arguments", "")
        if not isinstance(name, str) or not isinstance(arguments, str):
            raise RequestError("a tool_call's function needs name and arguments (strings)")
        entries.append(Entry("call", arguments, "commentary", f"functions.{name}", tool_call["id"]))
    return entries


def plan_chat(config: ServerConfig, store: ConversationStore, approvals: Approvals, req: ChatRequest) -> Plan:
    """The request's conversation, with every built-in tool the server runs (Chat Completions cannot ask for one)."""
    spec, entries = req.spec()
    spec.builtin_names = sorted(config.builtin_tools)
    return plan_stateless(config, store, approvals, spec, split([], entries))


def usage(builder: ResponseBuilder) -> dict[str, Any]:
    used = builder.usage
    return {
        "prompt_tokens": used.prompt_tokens,
        "completion_tokens": used.completion_tokens,
        "total_tokens": used.prompt_tokens + used.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": max(used.cached_tokens, used.prompt_tokens - used.prefilled_tokens)},
    }


def finish_reason(builder: ResponseBuilder) -> str:
    if builder.status == "incomplete":
        return "length"
    if any(item["type"] == "function_call" for item in builder.output):
        return "tool_calls"
    return "stop"


def completion(builder: ResponseBuilder) -> dict[str, Any]:
    """The non-streamed reply: one choice, one assistant message."""
    texts = [item["content"][0]["text"] for item in builder.output if item["type"] == "message"]
    reasoning = [item["content"][0]["text"] for item in builder.output if item["type"] == "reasoning"]
    calls = [
        {"id": item["call_id"], "type": "function", "function": {"name": item["name"], "arguments": item["arguments"]}}
        for item in builder.output
        if item["type"] == "function_call"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts) if texts or not calls else None}
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    if cited := _cited_files(builder):
        message["annotations"] = cited
    return {
        "id": "chatcmpl-" + builder.id.removeprefix("resp_"),
        "object": "chat.completion",
        "created": builder.created_at,
        "model": builder.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(builder), "logprobs": None}],
        "usage": usage(builder),
    }


def _cited_files(builder: ResponseBuilder) -> list[dict[str, Any]]:
    """The files the run made, as ``url_citation`` annotations on the joined content (see :func:`url_citation`)."""
    cited, offset = [], 0
    for number, item in enumerate(item for item in builder.output if item["type"] == "message"):
        offset += 2 if number else 0  # the "\n\n" that joins the messages' texts
        part = item["content"][0]
        cited += [url_citation(note, offset + note["start_index"]) for note in part.get("annotations", [])]
        offset += len(part["text"])
    return [note for note in cited if note is not None]


def url_citation(annotation: dict[str, Any], at: int) -> dict[str, Any] | None:
    """A file the run made, as Chat Completions can cite it: a ``url_citation`` (the only kind its messages
    carry) with the file's ``/files/...`` link and its name, at ``at`` in the content. The Responses API's
    ``container_file_citation`` has no counterpart there."""
    if annotation.get("type") != "container_file_citation":
        return None
    where = {"url": annotation["url"], "title": annotation["filename"], "start_index": at, "end_index": at}
    return {"type": "url_citation", "url_citation": where}


class Chunks:
    """The builder's streamed events as ``chat.completion.chunk`` objects."""

    def __init__(self, builder: ResponseBuilder, include_usage: bool) -> None:
        self.builder = builder
        self.include_usage = include_usage
        self.id = "chatcmpl-" + builder.id.removeprefix("resp_")
        self._calls: dict[str, int] = {}  # function_call item id -> tool_calls index
        self._content = 0  # characters of content sent so far

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.builder.created_at,
            "model": self.builder.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def first(self) -> dict[str, Any]:
        return self._chunk({"role": "assistant", "content": ""})

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "response.output_text.delta":
            self._content += len(event["delta"])
            return [self._chunk({"content": event["delta"]})]
        if kind == "response.output_text.annotation.added":
            cited = url_citation(event["annotation"], self._content)  # files are cited at the end of the answer
            return [self._chunk({"annotations": [cited]})] if cited is not None else []
        if kind == "response.reasoning_text.delta":
            return [self._chunk({"reasoning_content": event["delta"]})]
        if kind == "response.output_item.added" and event["item"]["type"] == "function_call":
            item = event["item"]
            index = self._calls[item["id"]] = len(self._calls)
            call = {"index": index, "id": item["call_id"], "type": "function"}
            return [self._chunk({"tool_calls": [{**call, "function": {"name": item["name"], "arguments": ""}}]})]
        if kind == "response.function_call_arguments.delta":
            index = self._calls[event["item_id"]]
            return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": event["delta"]}}]})]
        if kind == "response.failed":
            message = (self.builder.error or {}).get("message", "the model failed")
            return [{"error": {"message": message, "type": "server_error", "code": "server_error"}}]
        if kind in ("response.completed", "response.incomplete"):
            out = [self._chunk({}, finish_reason(self.builder))]
            if self.include_usage:
                out.append({**self._chunk({}), "choices": [], "usage": usage(self.builder)})
            return out
        return []


async def sse(chunks: Chunks, batches: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    """Server-sent events as Chat Completions clients read them: ``data:`` lines, then ``data: [DONE]``;
    each batch of the run's events (see ``Run.batches``) in one write, the last one with ``[DONE]``."""
    out = [{"data": json.dumps(chunks.first())}]
    async for batch in batches:
        out += [{"data": json.dumps(chunk)} for event in batch for chunk in chunks.feed(event)]
        if out and not any(event.get("type") in _LAST_EVENTS for event in batch):
            yield sse_bytes(out)
            out = []
    yield sse_bytes([*out, {"data": "[DONE]"}])


#: The events that end a run's stream: what they bring goes out together with ``[DONE]``.
_LAST_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
