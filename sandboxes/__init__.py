"""Isolated places where tools run code and drive programs.

A :class:`Sandbox` is a stateful Python session: :class:`DockerSandbox` (a
locked-down container) or :class:`LocalSandbox` (bubblewrap). A
:class:`VirtualDisplay` is an X display of the agent's own. They know
nothing of tools or agents.
"""

from harmony_agent.sandboxes.base import Execution, ExecutionError, Limits, Sandbox, SandboxError
from harmony_agent.sandboxes.display import VirtualDisplay
from harmony_agent.sandboxes.docker import DockerSandbox
from harmony_agent.sandboxes.local import LocalSandbox

__all__ = [
    "DockerSandbox",
    "Execution",
    "ExecutionError",
    "Limits",
    "LocalSandbox",
    "Sandbox",
    "SandboxError",
    "VirtualDisplay",
]
