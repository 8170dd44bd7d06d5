"""The agent each task of a batch runs: the task's settings over the command line's defaults.

It lives with the runs, not with the tools: it reads a :class:`TaskSpec` and builds an
:class:`~harmony_agent.Agent`, so it stands above both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harmony_agent.agent import Agent
from harmony_agent.imports import preload_policy
from harmony_agent.loop import Approver
from harmony_agent.models import load_model
from harmony_agent.runs.tasks import TaskSpec
from harmony_agent.toolbox import ToolOptions, build_tools

#: The model of a task that names none, when the command line names none either.
DEFAULT_MODEL = "openai/gpt-oss-20b"


@dataclass
class TaskAgentFactory:
    """Builds the agent of a task (picklable, so a Ray worker can build it where the task runs).

    The task's own settings win over ``defaults`` (the command line's).
    """

    defaults: TaskSpec | None = None
    approve: Approver | None = None

    def __call__(self, spec: TaskSpec, transcript: Path | None) -> Agent:
        base = self.defaults
        merged = {
            k: v for k, v in (base.model_dump(exclude_unset=True) if base else {}).items() if k not in ("id", "task")
        }
        merged.update(spec.model_dump(exclude_unset=True))
        full = TaskSpec.model_validate({**merged, "task": spec.task, "id": spec.id})
        options = ToolOptions(
            sandbox=full.sandbox,
            search=full.search,
            allow=full.allow,
            deny=full.deny,
            apps=full.apps,
            mcp=full.mcp,
            screenshots=transcript.with_suffix(".screenshots") if transcript else None,
        )
        tools = build_tools(full.tools, options, search_path=spec.folder or Path.cwd())
        preload_policy(full.model, [spec.folder or Path.cwd()])  # policy: modules beside the task file
        return Agent(
            load_model(full.model or DEFAULT_MODEL),
            tools=tools,
            instructions=full.instructions,
            reasoning=full.reasoning or "medium",
            max_steps=full.max_steps or 20,
            max_tokens=full.max_tokens or "auto",
            transcript=transcript,
            approve=self.approve,
            # Beside the transcript, so the task's report can show its plots (a report embeds only
            # what lies in the transcript's own folder); else the default, runs/<run id>/.
            output_dir=transcript.with_suffix(".files") if transcript else None,
        )
