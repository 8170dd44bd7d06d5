"""Isolated places where tools run code and drive programs.

A :class:`Sandbox` is a stateful Python session: :class:`DockerSandbox` (a
locked-down container) or :class:`LocalSandbox` (bubblewrap). A
:class:`VirtualDisplay` is an X display of the agent's own. They know
nothing of tools or agents.
"""

from .base import Execution, ExecutionError, Limits, Sandbox, SandboxError
from .display import VirtualDisplay
from .docker import DockerSandbox
from .local import LocalSandbox

__all__ = ["DockerSandbox", "Execution", "ExecutionError", "Limits", "LocalSandbox", "Sandbox", "SandboxError",
           "VirtualDisplay"]
