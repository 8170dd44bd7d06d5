"""Approvals given from the chat page (``harmony-agent serve --approve``).

With ``--approve`` every built-in tool call waits for a person. The loop asks
the conversation's :class:`ApprovalGate` on the session's own event loop; the
gate hands the request to the stream that is answering the client (on the
server's loop) as a ``response.approval_requested`` event, and waits for
``POST /v1/approvals/{id}``. A denial's reason is what the model is told.
Nothing waits forever: a stream that ends (the page closed, the client hung
up) denies what it left pending, a request that is not streamed has nobody
to ask and is denied at once, and the loop's own approval timeout still holds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
import threading
from collections.abc import Callable
from typing import Any

from harmony_agent.tools.base import ToolCall

Verdict = bool | str
#: Given an event for the client's stream; called from the session's thread.
Listener = Callable[[dict[str, Any]], object]  # what it returns is ignored


class Approvals:
    """Every approval request the server has open, by an unguessable id."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[ApprovalGate, concurrent.futures.Future[Verdict]]] = {}
        self._lock = threading.Lock()

    def gate(self) -> ApprovalGate:
        return ApprovalGate(self)

    def open(self, gate: ApprovalGate) -> tuple[str, concurrent.futures.Future[Verdict]]:
        approval_id = "appr_" + secrets.token_urlsafe(12)
        answer: concurrent.futures.Future[Verdict] = concurrent.futures.Future()
        with self._lock:
            self._open[approval_id] = (gate, answer)
        return approval_id, answer

    def resolve(self, approval_id: str, approve: bool, reason: str | None = None) -> bool:
        """Answer an open request; False when there is none by that id (answered, expired, or never asked)."""
        with self._lock:
            found = self._open.pop(approval_id, None)
        if found is None:
            return False
        verdict: Verdict = True if approve else f"not approved on the page{': ' + reason if reason else ''}"
        if not found[1].done():
            found[1].set_result(verdict)
        return True

    def deny_all(self, gate: ApprovalGate, reason: str) -> None:
        with self._lock:
            mine = [key for key, (owner, _) in self._open.items() if owner is gate]
        for key in mine:
            with self._lock:
                found = self._open.pop(key, None)
            if found is not None and not found[1].done():
                found[1].set_result(reason)

    def forget(self, approval_id: str) -> None:
        with self._lock:
            self._open.pop(approval_id, None)


class ApprovalGate:
    """One conversation's approval hook (the ``Agent``'s ``approve``): asks whoever streams its current response."""

    def __init__(self, approvals: Approvals) -> None:
        self.approvals = approvals
        self.listener: Listener | None = None
        # Between a streamed request's start and its stream's first byte, the run may already ask:
        # those requests wait here for the stream instead of being refused.
        self._expecting = False
        self._early: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    async def __call__(self, call: ToolCall) -> Verdict:
        with self._lock:
            listener, expecting = self.listener, self._expecting
            if listener is None and not expecting:
                return (
                    "not approved: this server asks a person to approve each tool call on its chat page, "
                    "and this request was not streamed to one"
                )
            approval_id, answer = self.approvals.open(self)
            event = {
                "type": "response.approval_requested",
                "approval_id": approval_id,
                "recipient": call.recipient,
                "arguments": call.content,
            }
            if listener is None:
                self._early.append(event)
        if listener is not None:
            listener(event)
        try:
            return await asyncio.wrap_future(answer)
        finally:
            self.approvals.forget(approval_id)

    def expect(self) -> None:
        """A streamed request is starting: hold approval requests until its stream attaches."""
        with self._lock:
            self._expecting = True

    def attach(self, listener: Listener) -> None:
        with self._lock:
            self.listener, early, self._early = listener, self._early, []
        for event in early:
            listener(event)

    def detach(self, reason: str = "not approved: the page that was asked went away") -> None:
        with self._lock:
            self.listener, self._expecting, self._early = None, False, []
        self.approvals.deny_all(self, reason)
