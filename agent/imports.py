"""``module:function`` specs (tools, policies, checks) imported from a task file's folder, with no lasting sys.path change.

A task file names its own helper modules relative to itself, so
``policy:my_policy:policy`` means ``my_policy.py`` beside the file, whatever
the current folder. The folder is on ``sys.path`` only while the import
runs. Two task folders may each have a ``policy.py``: a module already
imported from another folder is replaced in ``sys.modules`` by the one this
folder holds (agents built earlier keep theirs: they hold the objects).
Names that no folder holds (``harmony_agent.runs.demo_kit...``, installed
packages) are imported as usual.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType


def _holds(folder: Path, top: str) -> bool:
    return (folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file()


def _from_folder(module: ModuleType, folder: Path) -> bool:
    file = getattr(module, "__file__", None)
    return file is not None and Path(file).resolve().is_relative_to(folder)


def import_beside(name: str, folders: Sequence[Path | None]) -> ModuleType:
    """Import ``name`` from the first of ``folders`` that holds its top-level module, else as usual."""
    top = name.partition(".")[0]
    folder = next((f.resolve() for f in folders if f is not None and _holds(f.resolve(), top)), None)
    if folder is None:
        return importlib.import_module(name)
    loaded = sys.modules.get(top)
    if loaded is not None and not _from_folder(loaded, folder):
        for key in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
            del sys.modules[key]  # another folder's module of the same name
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        importlib.invalidate_caches()
        return importlib.import_module(name)
    finally:
        sys.path.remove(entry)  # the first occurrence: the one inserted above


def preload_policy(model: str | None, folders: Sequence[Path | None]) -> None:
    """Import a ``policy:module:function`` model's module from ``folders``, so loading the model finds it.

    Raises ValueError (with the spec) when the module cannot be imported.
    """
    if not model or not model.startswith("policy:"):
        return
    module_name, _, attr = model[len("policy:") :].rpartition(":")
    if not module_name or not attr:
        return  # the model loader says what a policy spec looks like
    try:
        import_beside(module_name, folders)
    except ImportError as exc:
        raise ValueError(f"cannot import policy {model[len('policy:') :]!r}: {exc}") from None
