"""Resolve harmony's vocabulary file without touching the network.

`openai_harmony.load_harmony_encoding` downloads ``o200k_base.tiktoken`` unless
the ``TIKTOKEN_ENCODINGS_BASE`` environment variable names a folder holding it.
Air-gapped machines cannot download, so we look, in order, at:

1. the folder the user set in ``TIKTOKEN_ENCODINGS_BASE``;
2. a verified copy in our cache folder;
3. a copy derived from the ``quicktok-v1`` package, which ships the same ranks
   in a compact binary layout;
4. only then harmony's own download.

Every copy we write or reuse is checked against the published sha256, and a
mismatch is an error: a wrong vocabulary would silently garble every prompt.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

VOCAB_FILENAME = "o200k_base.tiktoken"
VOCAB_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
ENV_VAR = "TIKTOKEN_ENCODINGS_BASE"


class VocabularyError(RuntimeError):
    """The vocabulary could not be resolved, or a copy failed its checksum."""


@dataclass(frozen=True)
class VocabSource:
    """Where the vocabulary came from: ``env``, ``cache``, ``quicktok`` or ``download``."""

    kind: str
    folder: Path | None


def cache_dir() -> Path:
    """The project's cache folder (``HARMONY_AGENT_CACHE`` or ``~/.cache/harmony-agent``)."""
    override = os.environ.get("HARMONY_AGENT_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harmony-agent"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def derive_from_quicktok(vocab_bytes: bytes) -> bytes:
    """Convert quicktok's binary vocabulary into tiktoken's text layout.

    quicktok stores a little-endian u32 count, then per token a u16 length, the
    token bytes and a u32 rank. tiktoken wants ``base64(bytes) rank`` lines
    sorted by rank.
    """
    try:
        (count,) = struct.unpack_from("<I", vocab_bytes, 0)
        offset = 4
        rows: list[tuple[int, bytes]] = []
        for _ in range(count):
            (length,) = struct.unpack_from("<H", vocab_bytes, offset)
            offset += 2
            token = vocab_bytes[offset : offset + length]
            offset += length
            (rank,) = struct.unpack_from("<I", vocab_bytes, offset)
            offset += 4
            rows.append((rank, token))
    except struct.error as exc:
        raise VocabularyError(f"quicktok vocabulary is truncated: {exc}") from exc
    if offset != len(vocab_bytes):
        raise VocabularyError("quicktok vocabulary has trailing bytes; unknown layout")
    rows.sort()
    return b"".join(base64.b64encode(tok) + b" " + str(rank).encode() + b"\n" for rank, tok in rows)


def _quicktok_vocab() -> bytes | None:
    try:
        return resources.files("quicktok").joinpath("data/o200k.vocab").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)


def resolve_vocabulary() -> VocabSource:
    """Find or build a verified vocabulary; returns where it came from.

    Nothing is exported to the process environment: :func:`agent.harmony.get_encoding`
    names the folder to harmony only while it loads the encoding.
    """
    user_folder = os.environ.get(ENV_VAR)
    if user_folder:
        path = Path(user_folder) / VOCAB_FILENAME
        if not path.is_file():
            raise VocabularyError(
                f"{ENV_VAR}={user_folder} but {path} does not exist; "
                f"unset {ENV_VAR} to let harmony-agent resolve the vocabulary itself"
            )
        return VocabSource("env", Path(user_folder))

    folder = cache_dir() / "encodings"
    cached = folder / VOCAB_FILENAME
    if cached.is_file():
        digest = _sha256(cached.read_bytes())
        if digest != VOCAB_SHA256:
            raise VocabularyError(
                f"cached vocabulary {cached} has sha256 {digest}, expected {VOCAB_SHA256}; "
                "delete it and run again to rebuild it"
            )
        source = VocabSource("cache", folder)
    else:
        raw = _quicktok_vocab()
        if raw is None:
            return VocabSource("download", None)
        derived = derive_from_quicktok(raw)
        digest = _sha256(derived)
        if digest != VOCAB_SHA256:
            raise VocabularyError(
                f"vocabulary derived from quicktok has sha256 {digest}, expected {VOCAB_SHA256}; "
                "the installed quicktok-v1 ships a different o200k table"
            )
        _write_atomically(cached, derived)
        source = VocabSource("quicktok", folder)
    return source
