"""Isolated places where tools run code and drive programs.

The Docker and bubblewrap sandboxes and the virtual display live here; they
know nothing of tools or agents.
"""

__all__: list[str] = []
