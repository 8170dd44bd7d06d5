"""What ``harmony-agent demo`` needs, shipped inside the package so the demo runs from any install.

The task files (``tasks/``), the stand-in policies that play gpt-oss in them,
the small local website the browser task reads (``site/`` and
:mod:`~harmony_agent.runs.demo_kit.local_site`) and the Greeter desktop app.
``examples/`` in a source checkout re-exports these, so there is one copy.
"""

from __future__ import annotations

from pathlib import Path

#: The folder of this kit (its task files are in ``tasks/``).
KIT = Path(__file__).resolve().parent
TASKS = KIT / "tasks"
