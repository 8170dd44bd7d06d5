"""Checks: did a run do what its task file says? Run before the session's resources are closed.

Each check gives a :class:`CheckOutcome` with a reason a person can read,
whether it passed or not. The answer checks read the result; file checks
read ``/mnt/data`` in the run's python sandbox; page checks read the views
the browser showed the model during the run; screen checks observe the
display as it is at the end; a function check calls your
``module:function(result, session)``, which returns ``True`` (passed),
``False`` or a reason (failed). Checks that use the session's tools run on
the session's own event loop, where those tools live.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from harmony_agent.citations import browser_views
from harmony_agent.imports import import_beside
from harmony_agent.runs.tasks import TaskCheck
from harmony_agent.tools.base import ToolCall

if TYPE_CHECKING:
    from harmony_agent.results import RunResult
    from harmony_agent.session import Session


class CheckOutcome(BaseModel):
    check: str
    passed: bool
    reason: str


async def check_task(
    checks: Sequence[TaskCheck], result: RunResult, session: Session, folder: Path | None = None
) -> list[CheckOutcome]:
    """Run every check (each one's failure is its own: a broken check never stops the others)."""
    outcomes = []
    for check in checks:
        try:
            passed, reason = await _run(check, result, session, folder)
        except Exception as exc:  # a check that cannot run has failed, and says why
            passed, reason = False, f"the check could not run: {type(exc).__name__}: {exc}"
        outcomes.append(CheckOutcome(check=check.describe(), passed=passed, reason=reason))
    return outcomes


async def _run(check: TaskCheck, result: RunResult, session: Session, folder: Path | None) -> tuple[bool, str]:
    kind, value = check.kind, check.value
    answer = result.final_text
    if kind.startswith("answer_"):
        if answer is None:
            return False, f"the run ended without an answer ({result.stop_reason}: {result.error})"
        if kind == "answer_equals":
            ok = answer.strip() == value.strip()
        elif kind == "answer_contains":
            ok = value in answer
        else:
            ok = re.search(value, answer) is not None
        return ok, f"the answer was {_short(answer)}"
    if kind.startswith("file_"):
        return await _file_check(check, session)
    if kind.startswith("page_"):
        return _page_check(kind, value, result)
    if kind == "screen_contains":
        return await _screen_check(value, session)
    return await _function_check(value, result, session, folder)


async def _file_check(check: TaskCheck, session: Session) -> tuple[bool, str]:
    path = check.path or check.value
    sandbox = next((getattr(tool, "sandbox", None) for tool in session.tools if tool.namespace == "python"), None)
    if sandbox is None or not getattr(sandbox, "started", False):
        return False, "the run never started the python tool, so /mnt/data holds nothing"
    try:
        data = await session.perform(sandbox.download(path))
    except Exception as exc:
        return False, f"/mnt/data/{path} could not be read: {exc}"
    if check.kind == "file_exists":
        return True, f"/mnt/data/{path} exists ({len(data)} bytes)"
    if check.kind == "file_contains":
        text = data.decode("utf-8", "replace")
        return check.value in text, f"/mnt/data/{path} holds {_short(text)}"
    digest = hashlib.sha256(data).hexdigest()
    return digest == check.value.lower(), f"/mnt/data/{path} has sha256 {digest}"


def _page_check(kind: str, value: str, result: RunResult) -> tuple[bool, str]:
    views = browser_views(result.events)
    if not views:
        return False, "the browser showed no page in this run"
    if kind == "page_url":
        urls = list(dict.fromkeys(url for _, url, _ in views))
        ok = any(url == value or url.rstrip("/") == value.rstrip("/") for url in urls)
        return ok, f"pages reached: {', '.join(urls[:10])}"
    ok = any(value in text for _, _, text in views)
    return ok, f"{'a' if ok else 'no'} page view contained {value!r}"


async def _screen_check(value: str, session: Session) -> tuple[bool, str]:
    computer = next((tool for tool in session.tools if "functions.observe" in tool.recipients()), None)
    if computer is None:
        return False, "the run has no computer tool, so there is no screen to read"
    seen = await session.perform(computer.process(ToolCall("functions.observe", "commentary", "{}")))
    if seen.is_error:
        return False, f"observing the screen failed: {seen.error}"
    return value in seen.output, f"{'found' if value in seen.output else 'did not find'} {value!r} on the screen"


async def _function_check(spec: str, result: RunResult, session: Session, folder: Path | None) -> tuple[bool, str]:
    module_name, _, name = spec.rpartition(":")
    function: Any = getattr(import_beside(module_name, [folder]), name)  # a task file's helpers sit beside it
    verdict = function(result, session)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    if verdict is True:
        return True, f"{spec} passed"
    if verdict is False or verdict is None:
        return False, f"{spec} returned {verdict} (return True for a pass, or a reason for a failure)"
    return False, str(verdict)


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "…")
