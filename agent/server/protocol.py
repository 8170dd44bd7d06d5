"""OpenAI's Responses API, as far as gpt-oss supports it: requests in, output items and events out.

:class:`ResponsesRequest` validates a ``POST /v1/responses`` body.
:class:`ResponseBuilder` turns the agent's typed events into the API's output
items (reasoning, messages, function calls for the client, code-interpreter
and web-search calls for the tools that ran on the server) and the
server-sent events that stream them, in the order and shape the ``openai``
SDK reads.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harmony_agent import events as ev

#: Built-in tool types a client may ask for, and the server-side tool each maps to.
BUILTIN_TYPES = {
    "code_interpreter": "python",
    "web_search_preview": "browser",
    "web_search": "browser",
    "computer_use_preview": "computer",
}


class RequestError(ValueError):
    """A request the server cannot take; the message goes back as a 400 error."""


class FunctionToolSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Reasoning(BaseModel):
    model_config = ConfigDict(extra="allow")
    effort: Literal["low", "medium", "high"] | None = None


_Request = TypeVar("_Request", bound="ClientRequest")


class ClientRequest(BaseModel):
    """A request body from a client: the fields a server honours; others are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    @classmethod
    def parse(cls: type[_Request], body: Any) -> _Request:
        """The request, or a :class:`RequestError` naming the first field that is wrong (a 400 for the client)."""
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise RequestError(f"invalid request: {where}: {first['msg']}") from None


class ResponsesRequest(ClientRequest):
    """The fields of a Responses API request this server honours (others are accepted and ignored)."""

    model: str | None = None
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    reasoning: Reasoning | None = None
    tools: list[dict[str, Any]] = []
    max_output_tokens: int | None = Field(default=None, ge=1)
    previous_response_id: str | None = None
    store: bool = True
    stream: bool = False

    def function_tools(self) -> list[FunctionToolSpec]:
        specs = []
        for tool in self.tools:
            if tool.get("type") == "function":
                try:
                    specs.append(FunctionToolSpec.model_validate(tool))
                except ValidationError as exc:
                    raise RequestError(
                        f"invalid function tool {tool.get('name')!r}: {exc.errors()[0]['msg']}"
                    ) from None
        return specs

    def builtin_tools(self) -> list[str]:
        names = []
        for tool in self.tools:
            kind = tool.get("type")
            if kind == "function":
                continue
            if kind not in BUILTIN_TYPES:
                raise RequestError(f"unsupported tool type {kind!r}: use function, {', '.join(sorted(BUILTIN_TYPES))}")
            if BUILTIN_TYPES[kind] not in names:
                names.append(BUILTIN_TYPES[kind])
        return names


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class ResponseBuilder:
    """Accumulates one response's output items from agent events, and says which SSE events to send.

    ``client_functions`` are the names of the functions the client declared:
    calls to them become ``function_call`` items for the client to answer.
    """

    def __init__(
        self,
        *,
        response_id: str,
        model: str,
        request: ResponsesRequest,
        client_functions: set[str],
        publish: Callable[[str], str] = lambda path: path,
        publish_file: Callable[[str, str], str | None] = lambda path, folder: None,
    ) -> None:
        self.id = response_id
        self.publish = publish
        #: Links a file the run made to a ``/files/...`` URL, only if it is inside the session's output folder.
        self.publish_file = publish_file
        self._output_dir: str | None = None  # the session's, from its RunStartEvent
        self.model = model
        self.request = request
        self.client_functions = client_functions
        self.created_at = int(time.time())
        self.output: list[dict[str, Any]] = []
        self.sequence = 0
        self.usage = ev.Usage()
        self.status = "in_progress"
        self.error: dict[str, Any] | None = None
        self.incomplete: dict[str, Any] | None = None
        #: Our call ids (from the loop) mapped to the ids the client sees, and back.
        self.client_call_ids: dict[str, str] = {}
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._open_key: tuple[str | None, str | None] | None = None
        self._tool_items: dict[str, int] = {}

    # -- the response object -----------------------------------------------------

    def response(self) -> dict[str, Any]:
        usage = self.usage
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "model": self.model,
            "status": self.status,
            "output": self.output,
            "error": self.error,
            "incomplete_details": self.incomplete,
            "instructions": self.request.instructions,
            "previous_response_id": self.request.previous_response_id,
            "max_output_tokens": self.request.max_output_tokens,
            "parallel_tool_calls": False,
            "reasoning": {"effort": self.request.reasoning.effort if self.request.reasoning else None},
            "tools": self.request.tools,
            "tool_choice": "auto",
            "store": self.request.store,
            "usage": {
                "input_tokens": usage.prompt_tokens,
                "output_tokens": usage.completion_tokens,
                "total_tokens": usage.prompt_tokens + usage.completion_tokens,
                "input_tokens_details": {
                    "cached_tokens": max(usage.cached_tokens, usage.prompt_tokens - usage.prefilled_tokens)
                },
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.sequence += 1
        return {"type": kind, "sequence_number": self.sequence, **fields}

    def created(self) -> list[dict[str, Any]]:
        return [
            self._event("response.created", response=self.response()),
            self._event("response.in_progress", response=self.response()),
        ]

    # -- events in, SSE events out -----------------------------------------------

    def feed(self, event: ev.Event) -> list[dict[str, Any]]:
        if isinstance(event, ev.RunStartEvent):
            self._output_dir = event.output_dir
            return []
        if isinstance(event, ev.TokenDeltaEvent):
            return self._delta(event)
        if isinstance(event, ev.GenerationEvent):
            return self._close_open()
        if isinstance(event, ev.ToolCallEvent):
            return self._tool_call(event)
        if isinstance(event, ev.ToolResultEvent):
            return self._tool_result(event)
        if isinstance(event, ev.RunEndEvent):
            return self._end(event)
        return []

    def _delta(self, event: ev.TokenDeltaEvent) -> list[dict[str, Any]]:
        if event.recipient is not None and not self._is_client_call(event.recipient):
            return []  # a call to a tool that runs here: shown whole, with its result, as its own item
        out: list[dict[str, Any]] = []
        key = (event.channel, event.recipient)
        if self._open is None or self._open_key != key:
            out += self._close_open()
            out += self._open_item(event)
        item, index = self._open, len(self.output) - 1
        assert item is not None
        if item["type"] == "reasoning":
            item["content"][0]["text"] += event.text
            out.append(
                self._event(
                    "response.reasoning_text.delta",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    delta=event.text,
                )
            )
        elif item["type"] == "function_call":
            item["arguments"] += event.text
            out.append(
                self._event(
                    "response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=event.text
                )
            )
        else:
            item["content"][0]["text"] += event.text
            out.append(
                self._event(
                    "response.output_text.delta",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    delta=event.text,
                    logprobs=[],
                )
            )
        return out

    def _is_client_call(self, recipient: str) -> bool:
        name = recipient.split(".", 1)[1] if recipient.startswith("functions.") else recipient
        return name in self.client_functions

    def _open_item(self, event: ev.TokenDeltaEvent) -> list[dict[str, Any]]:
        index = len(self.output)
        if event.recipient is not None:
            name = event.recipient.split(".", 1)[1] if event.recipient.startswith("functions.") else event.recipient
            item: dict[str, Any] = {
                "type": "function_call",
                "id": new_id("fc"),
                "call_id": new_id("call"),
                "name": name,
                "arguments": "",
                "status": "in_progress",
            }
            self.output.append(item)
            self._open, self._open_key = item, (event.channel, event.recipient)
            return [self._event("response.output_item.added", output_index=index, item=dict(item))]
        if event.channel == "analysis":
            item = {
                "type": "reasoning",
                "id": new_id("rs"),
                "summary": [],
                "status": "in_progress",
                "content": [{"type": "reasoning_text", "text": ""}],
            }
            self.output.append(item)
            self._open, self._open_key = item, (event.channel, None)
            return [self._event("response.output_item.added", output_index=index, item=_shell(item))]
        item = {
            "type": "message",
            "id": new_id("msg"),
            "role": "assistant",
            "status": "in_progress",
            "phase": "final_answer" if event.channel == "final" else "commentary",
            "content": [{"type": "output_text", "text": "", "annotations": [], "logprobs": []}],
        }
        self.output.append(item)
        self._open, self._open_key = item, (event.channel, None)
        return [
            self._event("response.output_item.added", output_index=index, item=_shell(item)),
            self._event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": []},
            ),
        ]

    def _close_open(self) -> list[dict[str, Any]]:
        item, self._open, self._open_key = self._open, None, None
        if item is None:
            return []
        index = self.output.index(item)
        item["status"] = "completed"
        out: list[dict[str, Any]] = []
        if item["type"] == "reasoning":
            text = item["content"][0]["text"]
            out.append(
                self._event(
                    "response.reasoning_text.done", item_id=item["id"], output_index=index, content_index=0, text=text
                )
            )
        elif item["type"] == "function_call":
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        else:
            part = item["content"][0]
            out.append(
                self._event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=part["text"],
                    logprobs=[],
                )
            )
            out.append(
                self._event(
                    "response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part
                )
            )
        out.append(self._event("response.output_item.done", output_index=index, item=item))
        return out

    def _tool_call(self, event: ev.ToolCallEvent) -> list[dict[str, Any]]:
        out = self._close_open()
        if self._is_client_call(event.recipient):
            # The item was streamed from its deltas; remember which loop call it is.
            for streamed in reversed(self.output):
                if streamed["type"] == "function_call" and streamed["call_id"] not in self.client_call_ids.values():
                    self.client_call_ids[event.call_id] = streamed["call_id"]
                    streamed["arguments"] = event.content
                    break
            return out
        namespace = event.recipient.split(".", 1)[0]
        index = len(self.output)
        if namespace == "python":
            item: dict[str, Any] = {
                "type": "code_interpreter_call",
                "id": new_id("ci"),
                "code": event.content,
                "container_id": "harmony-agent",
                "outputs": None,
                "status": "interpreting",
            }
        elif namespace == "browser":
            item = {
                "type": "web_search_call",
                "id": new_id("ws"),
                "status": "searching",
                "action": _browser_action(event.recipient, event.content),
            }
        else:
            item = {
                "type": "tool_call",
                "id": new_id("tc"),
                "name": event.recipient,
                "arguments": event.content,
                "output": None,
                "status": "in_progress",
            }
        self.output.append(item)
        self._tool_items[event.call_id] = index
        return out + [self._event("response.output_item.added", output_index=index, item=dict(item))]

    def _tool_result(self, event: ev.ToolResultEvent) -> list[dict[str, Any]]:
        index = self._tool_items.get(event.call_id)
        if index is None:
            return []
        item = self.output[index]
        failed = event.is_error
        if item["type"] == "code_interpreter_call":
            item["outputs"] = [{"type": "logs", "logs": event.content}]
            item["status"] = "failed" if failed else "completed"
        elif item["type"] == "web_search_call":
            item["status"] = "failed" if failed else "completed"
            item["result"] = event.content
        else:
            item["output"] = event.content
            item["status"] = "failed" if failed else "completed"
        if event.images:
            item["screenshots"] = [self.publish(path) for path in event.images]
        return [self._event("response.output_item.done", output_index=index, item=item)]

    def _end(self, event: ev.RunEndEvent) -> list[dict[str, Any]]:
        out = self._close_open()
        out += self._cite_files(event.files)
        self.usage = event.usage
        if event.stop_reason in ("final", "tool_call"):
            self.status = "completed"
            out.append(self._event("response.completed", response=self.response()))
        elif event.stop_reason == "model_error":
            self.status = "failed"
            self.error = {"code": "server_error", "message": event.error or "the model failed"}
            out.append(self._event("response.failed", response=self.response()))
        else:
            self.status = "incomplete"
            reason = "max_output_tokens" if event.stop_reason in ("max_tokens", "context_window") else event.stop_reason
            self.incomplete = {"reason": reason}
            out.append(self._event("response.incomplete", response=self.response()))
        return out

    def _cite_files(self, files: list[str]) -> list[dict[str, Any]]:
        """The files the run made (copied home into the session's output folder), cited on its last message.

        As OpenAI's code interpreter cites the files it made: ``container_file_citation`` annotations on the
        answer's text, each with the ``url`` (``/files/...``, behind the API key) to fetch it from. A turn with
        no message (it paused on a client function before saying anything) cites none.
        """
        messages = [index for index, item in enumerate(self.output) if item["type"] == "message"]
        if not files or not messages or self._output_dir is None:
            return []
        index = messages[-1]
        item = self.output[index]
        part = item["content"][0]
        out: list[dict[str, Any]] = []
        for path in files:
            url = self.publish_file(path, self._output_dir)
            if url is None:
                continue
            annotation = {
                "type": "container_file_citation",
                "container_id": "harmony-agent",
                "file_id": url.rsplit("/", 1)[-1],
                "filename": _relative_name(path, self._output_dir),
                "start_index": len(part["text"]),
                "end_index": len(part["text"]),
                "url": url,
            }
            part["annotations"].append(annotation)
            out.append(
                self._event(
                    "response.output_text.annotation.added",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    annotation_index=len(part["annotations"]) - 1,
                    annotation=annotation,
                )
            )
        return out


def _relative_name(path: str, folder: str) -> str:
    """A file's name as the sandbox wrote it (its path inside the output folder), for people to read."""
    try:
        return Path(path).relative_to(folder).as_posix()
    except ValueError:
        return Path(path).name


def _shell(item: dict[str, Any]) -> dict[str, Any]:
    """An item as announced when it is added: its content parts still empty."""
    shell = dict(item)
    if "content" in shell:
        shell["content"] = []
    return shell


def _browser_action(recipient: str, arguments: str) -> dict[str, Any]:
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        args = {}
    args = args if isinstance(args, dict) else {}
    name = recipient.split(".", 1)[1] if "." in recipient else ""
    if name == "search":
        return {"type": "search", "query": str(args.get("query", ""))}
    if name == "find":
        return {"type": "find_in_page", "pattern": str(args.get("pattern", "")), "url": str(args.get("cursor", ""))}
    target = args.get("id")
    return {"type": "open_page", "url": target if isinstance(target, str) else None, "name": name}
