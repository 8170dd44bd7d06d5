"""A GGUF file's header (its keys and its tensor table), read with ``struct`` straight from the file.

Why not ``gguf.GGUFReader``: it builds a numpy view for every part of every
value, and gpt-oss's tokenizer keys hold about 650,000 strings, so on this
project's machine it read the header of a tiny gpt-oss GGUF in 17 to 19 s, and
of a 12 GB one in about 70 s (``harmony-agent doctor`` waited on it). This reads
the same header in under a second, and only the header: the tensor data is
never touched. The file format is GGUF version 2 and 3 (64-bit counts).

The header may come from anywhere (a download, a file someone sent), so every
count and length is checked against what is left of the file before anything is
read or allocated, and a header that does not add up is a :class:`ModelError`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from harmony_agent.models.base import ModelError

#: GGUF value types: the scalar ones and their struct formats (8 is a string, 9 an array).
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9
DEFAULT_ALIGNMENT = 32


@dataclass
class GgufTensor:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # from the start of the data section
    nbytes: int  # by its type and shape (llama.cpp's block sizes, from the gguf package)


@dataclass
class GgufHeader:
    """What a GGUF's header says: ``fields`` maps each key to (value, value type, array item type or None)."""

    version: int
    fields: dict[str, tuple[Any, int, int | None]] = field(default_factory=dict)
    tensors: list[GgufTensor] = field(default_factory=list)
    data_start: int = 0

    def value(self, key: str, default: Any = None) -> Any:
        found = self.fields.get(key)
        return default if found is None else found[0]

    def tensor_bytes(self) -> int:
        """The bytes of all tensors."""
        return sum(tensor.nbytes for tensor in self.tensors)

    def data_end(self) -> int:
        """Where the last tensor ends in the file (a file shorter than this is incomplete)."""
        return self.data_start + max((t.offset + t.nbytes for t in self.tensors), default=0)


def read_gguf_header(path: str | os.PathLike[str]) -> GgufHeader:
    """Read ``path``'s header; a file that is not a whole GGUF is a :class:`ModelError` that says why."""
    try:
        with open(path, "rb") as file:
            return _Reader(file, os.fstat(file.fileno()).st_size, str(path)).header()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None


class _Reader:
    def __init__(self, file: BinaryIO, size: int, name: str) -> None:
        self.file, self.size, self.name, self.at = file, size, name, 0

    def header(self) -> GgufHeader:
        if self.size < 24:
            raise ModelError(f"{self.name} is not a GGUF file (it has only {self.size} bytes)")
        magic = self._bytes(4)
        if magic != b"GGUF":
            raise ModelError(f"{self.name} is not a GGUF file (it starts with {magic!r})")
        (version,) = self._take("<I")
        if version not in (2, 3):
            raise ModelError(f"{self.name} is GGUF version {version}; versions 2 and 3 are read")
        tensors, keys = self._take("<QQ")
        header = GgufHeader(version)
        for _ in range(self._count(keys, 8 + 4)):
            key = self._string()
            (vtype,) = self._take("<I")
            header.fields[key] = self._value(vtype)
        for _ in range(self._count(tensors, 8 + 4 + 4 + 8)):
            name = self._string()
            (dims,) = self._take("<I")
            shape = self._take(f"<{self._count(dims, 8)}Q")
            ggml_type, offset = self._take("<IQ")
            header.tensors.append(GgufTensor(name, tuple(shape), ggml_type, offset, _nbytes(name, shape, ggml_type)))
        alignment = header.value("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0:
            raise ModelError(f"{self.name} has a malformed header: alignment {alignment!r}")
        header.data_start = -(-self.at // alignment) * alignment
        end = header.data_end()
        if end > self.size:
            raise ModelError(
                f"{self.name} is incomplete: its tensors end at byte {end:,} but the file has {self.size:,} "
                "(an interrupted download or copy?)"
            )
        return header

    def _bytes(self, count: int) -> bytes:
        if count > self.size - self.at:
            raise ModelError(f"{self.name} has a malformed or truncated header (at byte {self.at:,})")
        data = self.file.read(count)
        if len(data) != count:
            raise ModelError(f"{self.name} has a truncated header (at byte {self.at:,})")
        self.at += count
        return data

    def _take(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self._bytes(struct.calcsize(fmt)))

    def _count(self, count: int, least_bytes_each: int) -> int:
        """A count from the header, refused when even its smallest items could not fit in the rest of the file."""
        if count * least_bytes_each > self.size - self.at:
            raise ModelError(f"{self.name} has a malformed header: {count:,} items at byte {self.at:,}")
        return count

    def _string(self) -> str:
        (length,) = self._take("<Q")
        try:
            return self._bytes(length).decode("utf-8")
        except UnicodeDecodeError:
            raise ModelError(f"{self.name} has a malformed header: a string that is not UTF-8") from None

    def _value(self, vtype: int) -> tuple[Any, int, int | None]:
        if vtype == STRING:
            return self._string(), vtype, None
        if vtype in SCALARS:
            return self._take(SCALARS[vtype])[0], vtype, None
        if vtype != ARRAY:
            raise ModelError(f"{self.name} has a malformed header: value type {vtype}")
        item, count = self._take("<IQ")
        if item == STRING:
            return [self._string() for _ in range(self._count(count, 8))], vtype, item
        if item not in SCALARS:
            raise ModelError(f"{self.name} has a malformed header: array of type {item}")
        each = SCALARS[item][1]
        return list(self._take(f"<{self._count(count, struct.calcsize(each))}{each}")), vtype, item


def _nbytes(name: str, shape: tuple[int, ...], ggml_type: int) -> int:
    try:
        import gguf
    except ImportError as exc:
        raise ModelError("sizing a GGUF's tensors needs the gguf package: pip install gguf") from exc
    try:
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        raise ModelError(f"tensor {name} has an unknown ggml type {ggml_type}") from None
    elements = 1
    for dim in shape:
        elements *= dim
    return elements // block * type_size
