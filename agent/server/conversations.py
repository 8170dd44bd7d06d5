"""The conversations ``serve`` holds, and how a request finds or starts one.

A conversation is one agent (the client's instructions, reasoning effort and
functions; the server's built-in tools) and one session (its sandbox,
browser and display, and a local model's KV cache). A request continues one
in two ways: by ``previous_response_id`` (a stored response), or, for a
stateless client that sends the whole conversation each time, when its
history is exactly what a held conversation has said and heard (see
``responses_input.py``). Otherwise the conversation is rebuilt from what the
client sent, in a new session: the words are all there, but python
variables and the like from earlier turns are not.

At most ``max_conversations`` are held; the least recently used is closed
(its sandbox, browser and display released) to make room, and one left
alone for ``idle_seconds`` is closed at the next request (a stateless
client never says it is done).
"""

from __future__ import annotations

import json
import re
import secrets
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openai_harmony import ToolDescription

from harmony_agent.agent import Agent
from harmony_agent.models import Model
from harmony_agent.results import RunResult
from harmony_agent.server.approvals import ApprovalGate, Approvals
from harmony_agent.server.protocol import FunctionToolSpec, RequestError
from harmony_agent.server.responses_input import ClientConversation, keys, rebuilt_result, render
from harmony_agent.session import Session
from harmony_agent.tools.base import FUNCTIONS_NAMESPACE, Tool, ToolCall, ToolResult


class ClientFunction(Tool):
    """A function the client declared: the model may call it, and the client answers the call."""

    namespace = FUNCTIONS_NAMESPACE
    answered_by_caller = True

    def __init__(self, spec: FunctionToolSpec) -> None:
        self.spec = spec

    def descriptions(self) -> list[ToolDescription]:
        return [ToolDescription.new(self.spec.name, self.spec.description or "", parameters=self.spec.parameters)]

    async def _process(self, call: ToolCall) -> ToolResult:  # pragma: no cover - the loop never runs it
        raise RuntimeError("a client function is answered by the client")

    def __repr__(self) -> str:
        return f"ClientFunction({self.spec.name!r})"


@dataclass
class ServerConfig:
    """What the server serves: one model, the built-in tools it may run, and how it guards them."""

    model: Model
    builtin_tools: dict[str, Tool] = field(default_factory=dict)
    api_key: str | None = None
    max_steps: int = 20
    max_conversations: int = 64
    #: A conversation no request has used for this long is closed (its sandbox, browser and display released).
    idle_seconds: float = 3600.0
    #: Every built-in tool call waits for a person's approval on the chat page (see ``approvals.py``).
    approve: bool = False
    #: The address the server is bound to: requests must name it (or localhost, or an allowed host) in Host.
    host: str = "127.0.0.1"
    #: Host names (besides the address the server is bound to, and localhost) that requests may be sent to.
    allow_hosts: list[str] = field(default_factory=list)
    #: The largest request body accepted, in bytes (gpt-oss's whole context is well under 1 MB of text).
    max_body_bytes: int = 4 * 1024 * 1024
    #: How deeply a request's JSON may nest (objects and lists).
    max_json_depth: int = 64


@dataclass
class Conversation:
    agent: Agent
    session: Session
    client_functions: set[str]
    #: The call ids the client saw, mapped to the loop's own.
    call_ids: dict[str, str] = field(default_factory=dict)
    gate: ApprovalGate | None = None
    #: What the agent was made from (instructions, effort, tools): a stateless request continues only an equal one.
    config_key: str = ""
    #: The keys of everything said and heard so far (see ``responses_input.Entry.key``).
    keys: list[tuple[str, ...]] = field(default_factory=list)
    #: When a request last finished in it (time.monotonic()), and whether one is running in it now.
    last_used: float = field(default_factory=time.monotonic)
    running: bool = False


@dataclass
class Stored:
    """A stored response: its conversation (to continue it), its run, and the response object (to retrieve it)."""

    conversation: Conversation
    result: RunResult
    response: dict[str, Any]


@dataclass
class Plan:
    """How a request runs: in which conversation, continuing which result, with what new input."""

    conversation: Conversation
    previous: RunResult | None
    task: str | None
    #: Function outputs by the loop's call ids.
    outputs: dict[str, str]
    #: The conversation's keys once the new input is in (the reply's are added when it is done).
    keys: list[tuple[str, ...]]
    #: Whether a held conversation was continued (False: started, or rebuilt from the client's items).
    continued: bool = False


class ConversationStore:
    """Held conversations (least recently used closed first) and stored responses by id."""

    def __init__(self, limit: int, idle_seconds: float = 3600.0) -> None:
        self.limit = limit
        self.idle_seconds = idle_seconds
        self._live: OrderedDict[int, Conversation] = OrderedDict()
        self._responses: OrderedDict[str, Stored] = OrderedDict()

    def get(self, response_id: str) -> Stored:
        try:
            found = self._responses[response_id]
        except KeyError:
            raise LookupError(
                f"no stored response {response_id!r} (responses made with store=false, or evicted, cannot be continued)"
            ) from None
        self._responses.move_to_end(response_id)
        return found

    def match(self, config_key: str, history_keys: list[tuple[str, ...]]) -> Conversation | None:
        """The held conversation whose whole transcript is ``history_keys`` (and whose agent is ``config_key``'s)."""
        for conversation in reversed(self._live.values()):
            if (
                conversation.config_key == config_key
                and conversation.keys == history_keys
                and not conversation.session.closed
                and conversation.session.last_result is not None
            ):
                return conversation
        return None

    async def hold(
        self, conversation: Conversation, response_id: str | None = None, stored: Stored | None = None
    ) -> None:
        """Keep ``conversation`` (and, with ``stored``, its response by id); close the oldest past the limit."""
        conversation.last_used = time.monotonic()
        self._live[id(conversation)] = conversation
        self._live.move_to_end(id(conversation))
        if response_id is not None and stored is not None:
            self._responses[response_id] = stored
        while len(self._live) > self.limit:
            _, oldest = self._live.popitem(last=False)
            for rid in [rid for rid, s in self._responses.items() if s.conversation is oldest]:
                del self._responses[rid]
            await oldest.session.aclose()

    async def expire_idle(self) -> None:
        """Close the conversations no request has used for ``idle_seconds`` (oldest first; they are in LRU order)."""
        now = time.monotonic()
        while self._live:
            oldest = next(iter(self._live.values()))
            if now - oldest.last_used <= self.idle_seconds or oldest.running:
                return
            await self.release(oldest)

    async def release(self, conversation: Conversation) -> None:
        """Forget and close a conversation (its client went away mid-answer)."""
        self._live.pop(id(conversation), None)
        for rid in [rid for rid, s in self._responses.items() if s.conversation is conversation]:
            del self._responses[rid]
        await conversation.session.aclose()

    @property
    def held(self) -> int:
        return len(self._live)

    async def close(self) -> None:
        conversations = list(self._live.values())
        self._live.clear()
        self._responses.clear()
        for conversation in conversations:
            await conversation.session.aclose()


@dataclass
class AgentSpec:
    """What a request asks the agent to be, in either API."""

    instructions: str | None
    effort: str
    builtin_names: list[str]
    functions: list[FunctionToolSpec]
    max_tokens: int | None

    def key(self) -> str:
        functions = [spec.model_dump(mode="json", exclude_none=True) for spec in self.functions]
        return json.dumps([self.instructions, self.effort, self.builtin_names, functions], sort_keys=True)


def open_conversation(config: ServerConfig, approvals: Approvals, spec: AgentSpec) -> Conversation:
    """A new conversation: an agent made from ``spec``, in a session of its own."""
    missing = [name for name in spec.builtin_names if name not in config.builtin_tools]
    if missing:
        enabled = ", ".join(sorted(config.builtin_tools)) or "none"
        raise RequestError(
            f"this server does not run the {', '.join(missing)} tool (enabled: {enabled}); start it with --tools"
        )
    tools: list[Tool] = [config.builtin_tools[name].fresh() for name in spec.builtin_names]
    tools += [ClientFunction(function) for function in spec.functions]
    gate = approvals.gate() if config.approve else None
    try:
        agent = Agent(
            config.model,
            tools=tools,
            instructions=spec.instructions,
            reasoning=spec.effort,
            max_steps=config.max_steps,
            max_tokens=spec.max_tokens,
            approve=gate,
        )
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    names = {function.name for function in spec.functions}
    return Conversation(agent, agent.default_session, names, gate=gate, config_key=spec.key())


def plan_stateless(
    config: ServerConfig, store: ConversationStore, approvals: Approvals, spec: AgentSpec, client: ClientConversation
) -> Plan:
    """Continue the held conversation ``client``'s history matches, or rebuild one from it."""
    history_keys = keys(client.history)
    new_keys = history_keys + keys(client.new)
    held = store.match(spec.key(), history_keys) if client.history else None
    if held is not None:
        previous = held.session.last_result
        assert previous is not None
        pending = {c.call_id for c in previous.pending_calls}
        mapped = {held.call_ids.get(cid, cid): text for cid, text in client.outputs.items()}
        if set(mapped) == pending:
            return Plan(held, previous, client.task, mapped, new_keys, continued=True)
    conversation = open_conversation(config, approvals, spec)
    previous = None
    if client.history:
        pending_calls = client.pending_calls()
        history = render(conversation.agent.preamble(), client.history)
        previous = rebuilt_result(history, pending_calls)
        conversation.call_ids = {c.call_id: c.call_id for c in pending_calls}
    return Plan(conversation, previous, client.task, dict(client.outputs), new_keys)


class PublishedFiles:
    """Files a response links to, served by an unguessable name: no other file can be asked for.

    Two kinds: the screenshots our own tools saved (:meth:`publish`), and the files a run's tools made, which
    the session copied home into its output folder (:meth:`publish_inside`). Those carry names the sandbox
    chose, so one is published only if it is a plain file strictly inside that folder, reached by no link.
    A file keeps its token: a figure shown in a tool's result and listed among the run's files is one link.
    """

    def __init__(self) -> None:
        self._paths: dict[str, Path] = {}
        self._tokens: dict[Path, str] = {}

    def publish(self, path: str) -> str:
        return self._link(Path(path).absolute())

    def publish_inside(self, path: str, folder: str) -> str | None:
        """``path``'s link if it is a regular file inside ``folder`` (no symlink on the way), else None."""
        root, candidate = Path(folder).absolute(), Path(path)
        if not candidate.is_absolute() or not candidate.is_relative_to(root):
            return None
        try:
            resolved, real_root = candidate.resolve(strict=True), root.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        inside = resolved.is_relative_to(real_root) and resolved.relative_to(real_root) == candidate.relative_to(root)
        if not inside or resolved == real_root or not _regular(resolved):
            return None
        return self._link(resolved)

    def _link(self, path: Path) -> str:
        token = self._tokens.get(path)
        if token is None:
            suffix = path.suffix.lower()
            token = secrets.token_urlsafe(16) + (suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else "")
            self._tokens[path], self._paths[token] = token, path
        return f"/files/{token}"

    def get(self, token: str) -> Path | None:
        path = self._paths.get(token)
        return path if path is not None and _regular(path) else None


def _regular(path: Path) -> bool:
    """A plain file, not a link to one (the output folder holds what the session copied, as plain files)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False
