"""Lay out the harmony_agent import tree as symlinks, for tools that read source files, not installs.

The repository keeps agent/, tools/ and sandboxes/ side by side; pyproject's package-dir installs them
as harmony_agent, harmony_agent.tools and harmony_agent.sandboxes. Type checkers and mkdocstrings read
the source tree and cannot follow that mapping, so scripts/typecheck.sh and the documentation build
(mkdocs.yml's hook) point them at this tree instead.

    python scripts/import_tree.py FOLDER     # FOLDER/harmony_agent/... links into the checkout
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(folder: Path) -> Path:
    """Make ``folder/harmony_agent`` anew and return ``folder``."""
    package = folder / "harmony_agent"
    if package.exists():
        shutil.rmtree(package)
    package.mkdir(parents=True)
    for entry in sorted((ROOT / "agent").iterdir()):
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "tools").symlink_to(ROOT / "tools")
    (package / "sandboxes").symlink_to(ROOT / "sandboxes")
    return folder


def on_startup(**_: object) -> None:
    """mkdocs hook, before any plugin's configuration: the tree mkdocstrings reads (mkdocs.yml's path)."""
    build(ROOT / "build" / "import-tree")


if __name__ == "__main__":
    build(Path(sys.argv[1]))
