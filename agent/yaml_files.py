"""Reading a YAML file someone else wrote (a task file, a scripted model's script) without being blown up by it.

PyYAML's safe loader builds nothing dangerous, but a few hundred bytes of
nested aliases (a "billion laughs") stand for billions of values: loading is
cheap, because an aliased node is built once and shared, and what explodes is
every later walk that copies the tree (variable expansion, validation, a
script's completions). So the file's size is capped before it is parsed, and
the document's size with every alias expanded is counted on the composed node
graph, each node once, before anything is built.

This module imports nothing of the project's, so every level may use it
(``tests/core/test_layout.py`` places it at the bottom): it is the one reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

#: A file larger than this is refused unread (task files and scripts are a few kilobytes).
MAX_FILE_BYTES = 1 << 20
#: Values in a document once its aliases are expanded (a "billion laughs" file names billions with a few).
MAX_VALUES = 100_000
#: Deepest nesting of sequences and mappings.
MAX_DEPTH = 100


class YamlFileError(ValueError):
    """A YAML file refused (unreadable, too big, a YAML bomb, invalid); the message names the file."""


class _ComposingLoader(yaml.SafeLoader):
    """PyYAML's safe loader, composing the document before building it, so its size can be checked first."""


def read_yaml(path: str | Path, *, what: str = "YAML file", max_bytes: int = MAX_FILE_BYTES) -> Any:
    """The YAML in ``path``, or :class:`YamlFileError` when it is unreadable, too big, or its aliases expand
    too far. ``what`` names the kind of file in the messages (``task file``, ``script file``)."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise YamlFileError(f"{path}: cannot read it ({exc.strerror})") from None
    if len(data) > max_bytes:
        raise YamlFileError(f"{path} is over {max_bytes // 1024} KiB; a {what} is a few kilobytes")
    try:
        loader = _ComposingLoader(data.decode("utf-8"))
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            size = _expanded_size(node, {}, 0, what)
            if size > MAX_VALUES:
                raise YamlFileError(
                    f"{path}: its aliases expand to over {MAX_VALUES} values (a YAML bomb?); refused unread"
                )
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise YamlFileError(f"{path} is not valid YAML: {exc}") from None
    except RecursionError:
        raise YamlFileError(f"{path} nests too deeply to be a {what}") from None


def _expanded_size(node: yaml.Node, sizes: dict[int, int], depth: int, what: str) -> int:
    """How many values ``node`` stands for with every alias expanded (memoized: shared nodes count per use)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    if depth > MAX_DEPTH:
        raise YamlFileError(f"a {what} nests over {MAX_DEPTH} levels deep")
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            total += _expanded_size(child, sizes, depth + 1, what)
            if total > MAX_VALUES:
                break
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            total += _expanded_size(key, sizes, depth + 1, what) + _expanded_size(value, sizes, depth + 1, what)
            if total > MAX_VALUES:
                break
    sizes[id(node)] = total
    return total
