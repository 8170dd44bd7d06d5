"""The GGUF header reader ``doctor`` and the memory estimate use: the same answers as the gguf package's
reader, without its minute on a real vocabulary, and a clear error for a file that is not a whole GGUF."""

from __future__ import annotations

import struct

import pytest

from harmony_agent.models.base import ModelError
from harmony_agent.models.gguf_header import read_gguf_header

gguf = pytest.importorskip("gguf")
np = pytest.importorskip("numpy")


@pytest.fixture
def small_gguf(tmp_path):
    """A GGUF written by the gguf package: keys of every kind, a vocabulary, and two tensors of two types."""
    path = tmp_path / "small.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt-oss")
    writer.add_block_count(2)
    writer.add_context_length(4096)
    writer.add_float32("gpt-oss.rope.freq_base", 150000.0)
    writer.add_bool("gpt-oss.flag", True)
    writer.add_string("general.name", "small ü")
    writer.add_token_list([f"tok{i}" for i in range(3000)])
    writer.add_array("gpt-oss.layer_sizes", [7, 8, 9])
    writer.add_tensor("a.weight", np.ones((16, 32), dtype=np.float32))
    writer.add_tensor("b.weight", np.ones((64,), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_the_header_matches_the_gguf_package(small_gguf):
    header = read_gguf_header(small_gguf)
    reference = gguf.GGUFReader(str(small_gguf))
    for key, field in reference.fields.items():
        if key.startswith("GGUF."):  # the reader's own entries for the file's version and counts
            continue
        expected = field.contents()
        assert header.value(key) == (pytest.approx(expected) if isinstance(expected, float) else expected), key
    assert header.value("general.name") == "small ü"
    assert len(header.value("tokenizer.ggml.tokens")) == 3000
    assert [t.name for t in header.tensors] == [t.name for t in reference.tensors]
    assert header.tensor_bytes() == sum(int(t.n_bytes) for t in reference.tensors) == 16 * 32 * 4 + 64 * 2
    assert header.data_start == reference.data_offset
    assert header.data_end() <= small_gguf.stat().st_size


def test_the_memory_estimate_reads_the_header_with_it(small_gguf):
    from harmony_agent.models.llamacpp import memory_breakdown

    need = memory_breakdown(small_gguf, 1024)
    assert need.architecture == "gpt-oss"
    assert need.weights == 16 * 32 * 4 + 64 * 2


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda data: b"GGML" + data[4:], "is not a GGUF file"),
        (lambda data: data[:4] + struct.pack("<I", 9) + data[8:], "GGUF version 9"),
        (lambda data: data[:200], "truncated"),
        (lambda data: data[: len(data) - 100], "is incomplete"),
        (lambda data: data[:16] + struct.pack("<Q", 2**60) + data[24:], "malformed header"),  # keys
        (lambda data: data[:8] + struct.pack("<Q", 2**40) + data[16:], "malformed header"),  # tensors
        (lambda data: b"", "not a GGUF file"),
    ],
)
def test_a_damaged_or_hostile_header_is_a_clear_error(small_gguf, tmp_path, damage, said):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(damage(small_gguf.read_bytes()))
    with pytest.raises(ModelError, match=said):
        read_gguf_header(broken)


def test_a_string_length_past_the_end_is_refused_before_reading(small_gguf, tmp_path):
    data = bytearray(small_gguf.read_bytes())
    first_key_length = 24  # magic, version, tensor count, key count; then the first key's length
    data[first_key_length : first_key_length + 8] = struct.pack("<Q", 2**62)
    broken = tmp_path / "long.gguf"
    broken.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="malformed or truncated"):
        read_gguf_header(broken)
