import hashlib

import pytest

from harmony_agent.harmony import vocab


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("TIKTOKEN_ENCODINGS_BASE", raising=False)
    monkeypatch.setenv("HARMONY_AGENT_CACHE", str(tmp_path))
    return tmp_path


def test_derives_verified_vocabulary_from_quicktok(isolated):
    source = vocab.resolve_vocabulary()
    assert source.kind == "quicktok"
    data = (isolated / "encodings" / vocab.VOCAB_FILENAME).read_bytes()
    assert hashlib.sha256(data).hexdigest() == vocab.VOCAB_SHA256
    # The second resolution reuses the verified cache.
    assert vocab.resolve_vocabulary().kind == "cache"


def test_corrupt_cache_is_a_clear_error(isolated):
    path = isolated / "encodings" / vocab.VOCAB_FILENAME
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a vocabulary\n")
    with pytest.raises(vocab.VocabularyError, match="sha256"):
        vocab.resolve_vocabulary()


def test_user_folder_without_file_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", str(tmp_path))
    with pytest.raises(vocab.VocabularyError, match="does not exist"):
        vocab.resolve_vocabulary()


def test_quicktok_layout_is_decoded_in_rank_order():
    import struct

    raw = (
        struct.pack("<I", 2)
        + struct.pack("<H", 2)
        + b"ab"
        + struct.pack("<I", 1)
        + struct.pack("<H", 1)
        + b"x"
        + struct.pack("<I", 0)
    )
    assert vocab.derive_from_quicktok(raw) == b"eA== 0\nYWI= 1\n"
    with pytest.raises(vocab.VocabularyError):
        vocab.derive_from_quicktok(raw[:-2])
