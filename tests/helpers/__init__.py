"""Helpers the tests share: stand-in servers, tiny gpt-oss models, page lures, CLI drivers.

Imported by name (``from helpers.processes import free_port``); pytest puts tests/ on the path.
"""

from pathlib import Path

#: The repository's root and its tests folder.
ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
