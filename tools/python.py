"""The built-in ``python`` tool: a stateful notebook session in a sandbox.

The model is given harmony's own description of the tool (stateful Jupyter,
a 120 s timeout, a persistent ``/mnt/data``) and the tool keeps those
promises. Code runs in a :class:`sandboxes.Sandbox`: Docker when an engine
answers and the image is there, bubblewrap otherwise; the choice is logged
and reported in every result's metadata. Cells run on IPython where the
sandbox has it (``display()``, ``!cmd``, ``%magics``, top-level ``await``),
and every reply's metadata names the kernel. Where the sandbox lacks IPython,
the first reply of a session says so in its text, so the model, which was
promised a Jupyter notebook, knows not to write notebook syntax; with IPython
the promise holds and the model is spared the line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from pathlib import Path

from openai_harmony import ToolDescription, ToolNamespaceConfig

from harmony_agent.sandboxes import DockerSandbox, Execution, LocalSandbox, Sandbox, SandboxError
from harmony_agent.sandboxes.docker import docker_client
from harmony_agent.sandboxes.images import DEFAULT_IMAGE
from harmony_agent.sandboxes.local import bubblewrap_path
from harmony_agent.sandboxes.outbox import Collected
from harmony_agent.tools.base import Tool, ToolCall, ToolError, ToolResult

log = logging.getLogger("harmony_agent.python")

SANDBOX_CHOICES = ("auto", "docker", "bubblewrap", "unsandboxed")
_FENCE = re.compile(r"^\s*```(?:python|py)?\s*\n(.*?)\n?```\s*$", re.DOTALL)


def tool_description(timeout: float) -> str:
    """harmony's python description, with the facts of this sandbox filled in."""
    text = ToolNamespaceConfig.python().description
    text = text.replace("120.0 seconds", f"{float(timeout)} seconds")  # harmony writes the default as 120.0
    return re.sub(
        r"Internet access for this session is .*$",
        "Internet access for this session is disabled.",
        text,
        flags=re.DOTALL,
    )


def check_sandbox_choice(kind: str) -> str:
    if kind not in SANDBOX_CHOICES:
        raise ValueError(f"unknown sandbox {kind!r}: choose one of {', '.join(SANDBOX_CHOICES)}")
    return kind


def choose_sandbox(kind: str = "auto", *, image: str = DEFAULT_IMAGE, timeout: float = 120.0) -> tuple[Sandbox, str]:
    """A sandbox of the named kind, or for ``auto`` the best one available; returns it and a line saying why.

    Blocking (it may ask the Docker engine), so call it from a thread in async code.
    """
    check_sandbox_choice(kind)
    if kind == "docker":
        return DockerSandbox(image, timeout=timeout), "Docker (asked for)"
    if kind == "bubblewrap":
        return LocalSandbox(timeout=timeout), "bubblewrap (asked for)"
    if kind == "unsandboxed":
        return LocalSandbox(isolation="unsandboxed", timeout=timeout), "an UNSANDBOXED subprocess (asked for)"
    try:
        client = docker_client(timeout=5)
        client.images.get(image)
        return DockerSandbox(image, timeout=timeout), "Docker (an engine answers and the image is present)"
    except SandboxError as exc:
        why = f"no Docker: {exc}"
    except Exception:  # the engine answers but the image is missing
        why = f"Docker answers but the image {image} is missing (build it with `harmony-agent sandbox build`)"
    if bubblewrap_path() is not None:
        return LocalSandbox(timeout=timeout), f"bubblewrap ({why})"
    raise SandboxError(
        f"no sandbox is available for the python tool ({why}; bubblewrap is not installed either). "
        "Run `bash scripts/setup.sh`, or choose the unsandboxed kind explicitly if you accept the risk."
    )


def extract_code(call: ToolCall) -> str:
    """The code in a call: raw text as harmony specifies, tolerating a JSON ``{"code": ...}`` or a markdown fence."""
    text = call.content
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("code"), str):
            text = value["code"]
    fenced = _FENCE.match(text)
    return fenced.group(1) if fenced else text


def render_execution(execution: Execution) -> ToolResult:
    """What a notebook would show: output streams, the last value, then any error; notes on files and images."""
    parts = [p.rstrip("\n") for p in (execution.stdout, execution.stderr) if p]
    if execution.result is not None:
        parts.append(execution.result)
    if execution.files:
        more = f" and {execution.files_omitted:,} more" if execution.files_omitted else ""
        parts.append("[files written: " + ", ".join(execution.files) + more + "]")
    if execution.images:
        parts.append("[figures saved: " + ", ".join(execution.images) + "]")
    error = None
    if execution.error is not None or execution.status != "ok":
        found = execution.error
        detail = (found.traceback.rstrip() or f"{found.ename}: {found.evalue}") if found else execution.status
        if execution.status == "timeout" and found is not None and found.traceback:
            detail = f"{found.traceback.rstrip()}\nTimeoutError: {found.evalue}"
        error = "\n".join([detail, *execution.notes])
    if error is None:  # notes on an answer that worked: state lost since the last call
        parts.extend(f"[{note}]" for note in execution.notes)
    output = "\n".join(parts)
    if not output and error is None:
        output = "[no output: end the cell with an expression, or print() what you want to see]"
    return ToolResult(
        output=output,
        error=error,
        files=execution.files,
        images=execution.images,
        metadata={"status": execution.status, "duration_s": execution.duration_s, "state_lost": execution.state_lost},
    )


class PythonTool(Tool):
    """gpt-oss's built-in python tool: a stateful session in a Docker or bubblewrap sandbox.

    ``sandbox`` is a :class:`Sandbox` you built, or one of ``auto`` (the
    default; the ``HARMONY_AGENT_SANDBOX`` environment variable overrides it),
    ``docker``, ``bubblewrap`` or ``unsandboxed``. The sandbox starts at the
    first call, or at :meth:`start`.

    ``output_dir`` is the host folder where the images a cell shows are
    copied, through the sandbox, as it answers (the session sets it to its run's
    output folder); its result's ``images`` are those copies. Without one,
    images stay in the sandbox and the result names no host file.
    """

    namespace = "python"

    def __init__(
        self,
        sandbox: Sandbox | str | None = None,
        *,
        timeout: float = 120.0,
        image: str = DEFAULT_IMAGE,
        output_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.timeout = timeout
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self._output_given = self.output_dir  # what fresh() copies: a session sets its own folder otherwise
        self.image = image
        self.namespace_description = tool_description(timeout)
        self._requested = sandbox if sandbox is not None else os.environ.get("HARMONY_AGENT_SANDBOX", "auto")
        if isinstance(self._requested, str):
            check_sandbox_choice(self._requested)
        self.sandbox: Sandbox | None = sandbox if isinstance(sandbox, Sandbox) else None
        self.choice = "the sandbox given" if self.sandbox is not None else ""
        self._starting = asyncio.Lock()
        self._announced: Sandbox | None = None  # the sandbox whose kernel the model has been told of

    def fresh(self) -> PythonTool:
        """A new, unstarted PythonTool for another session (its own kernel and /mnt/data)."""
        if not isinstance(self._requested, str):
            raise ToolError(
                "this PythonTool was given a Sandbox instance, which one session owns; pass "
                "sandbox='auto', 'docker' or 'bubblewrap' to give each session a sandbox of its own"
            )
        return PythonTool(self._requested, timeout=self.timeout, image=self.image, output_dir=self._output_given)

    def descriptions(self) -> list[ToolDescription]:
        return []  # the namespace itself is the recipient: the message's content is the code

    def namespace_config(self) -> ToolNamespaceConfig:
        return ToolNamespaceConfig(name=self.namespace, description=self.namespace_description, tools=[])

    async def start(self) -> str:
        """Start the sandbox now (instead of at the first call); returns a line saying which one and why."""
        async with self._starting:
            sandbox = self.sandbox
            if sandbox is None:
                chosen, self.choice = await asyncio.to_thread(
                    choose_sandbox, str(self._requested), image=self.image, timeout=self.timeout
                )
                sandbox = self.sandbox = chosen
            await sandbox.start()
            line = f"python tool: {self.choice}; {sandbox.describe()}; kernel: {sandbox.describe_kernel()}"
            log.info(line)
            return line

    async def _process(self, call: ToolCall) -> ToolResult:
        code = extract_code(call)
        if not code.strip():
            raise ToolError("the message was empty: send Python code as the message content")
        try:
            if self.sandbox is None or not self.sandbox.started:
                await self.start()
            assert self.sandbox is not None
            execution = await self.sandbox.execute(code, timeout=self.timeout)
        except SandboxError as exc:
            raise ToolError(f"the python sandbox is unavailable: {exc}") from exc
        result = render_execution(execution)
        output = result.output
        images: tuple[str, ...] = ()
        if execution.images and self.output_dir is not None:  # copied through the sandbox, never by its word
            collected = await self.sandbox.bring_home(self.output_dir, execution.images)
            images = tuple(str(path) for path in collected.files)
            output = "\n".join([output, *(f"[{note}]" for note in collected.notes)])
        if self._announced is not self.sandbox:  # once per session: a kernel that is not the notebook promised
            self._announced = self.sandbox
            if not self.sandbox.notebook:
                output = "\n".join(p for p in (output, f"[python kernel: {self.sandbox.describe_kernel()}]") if p)
        return ToolResult(
            output=output,
            error=result.error,
            images=images,
            metadata={**result.metadata, "sandbox": self.sandbox.kind, "kernel": self.sandbox.kernel_name},
        )

    async def bring_home(self, folder: str | os.PathLike[str]) -> Collected:
        """Copy the files the code wrote to the data folder (new or changed since the last copy) into ``folder``."""
        if self.sandbox is None or not self.sandbox.started:
            return Collected()
        return await self.sandbox.bring_home(folder)

    async def aclose(self) -> None:
        if self.sandbox is not None:
            await self.sandbox.close()
