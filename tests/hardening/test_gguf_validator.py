"""The pure-Python GGUF validator: what it accepts, what it names when it rejects."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from gguf_corpus import ARRAY, STRING, FileMap, gguf_string, kv_bytes, map_file, rebuild, u32, u64

import llamakit
from llamakit._gguf.ggml_types import GGML_TYPES

_U16 = 2


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_type_table_matches_the_compiled_library(model: llamakit.Model) -> None:
    """Every ggml type id's block and byte size is the one the built llama.cpp uses."""
    from llamakit._native.quantize import ggml_types

    native = model._handle.native
    assert len(GGML_TYPES) == native.lib.GGML_TYPE_COUNT
    live = {t.id: (t.name, t.blck_size, t.type_size) for t in ggml_types(native).values()}
    ours = {i: (t.name, t.blck_size, t.type_size) for i, t in enumerate(GGML_TYPES)
            if t.blck_size}
    assert ours == live


def test_valid_model_passes_with_its_layout(tiny_model_path: Path) -> None:
    """A synthetic model passes; the summary gives its counts and data section."""
    summary = llamakit.validate_gguf(tiny_model_path)
    assert summary.version == 3 and summary.architecture == "llama"
    assert summary.n_tensors == 2 * 9 + 3 and summary.n_kv > 10
    assert summary.alignment == 32 and summary.data_offset % 32 == 0
    assert summary.data_offset + summary.data_size == summary.file_size
    assert summary.shards == ()


def test_llama_cpp_vocab_files_pass(llama_cpp_dir: Path) -> None:
    """Every GGUF llama.cpp ships (vocabularies written by its converter) is accepted."""
    files = sorted((llama_cpp_dir / "models").glob("ggml-vocab-*.gguf"))
    assert len(files) >= 10
    for path in files:
        assert llamakit.validate_gguf(path).n_tensors == 0, path.name


def test_truncated_header_names_field_and_offset(corpus_base: Path, tmp_path: Path) -> None:
    """A file cut inside the tensor count is reported at byte 8, field n_tensors."""
    path = _write(tmp_path / "cut.gguf", corpus_base.read_bytes()[:12])
    with pytest.raises(llamakit.GGUFFormatError) as info:
        llamakit.validate_gguf(path)
    assert (info.value.field, info.value.offset) == ("n_tensors", 8)
    assert isinstance(info.value, llamakit.ModelLoadError) and info.value.path == path


def test_lying_string_length_is_reported_where_it_lies(corpus_base: Path,
                                                       tmp_path: Path) -> None:
    """A key length past the end of the file names that key's length field and offset."""
    data = corpus_base.read_bytes()
    fmap = map_file(data)
    kv = fmap.kvs[3]
    path = _write(tmp_path / "lie.gguf",
                  data[:kv.at] + u64(2**40) + data[kv.at + 8:])
    with pytest.raises(llamakit.GGUFFormatError, match="length") as info:
        llamakit.validate_gguf(path)
    assert info.value.offset == kv.at and info.value.field == "kv[3].key length"


def test_tensor_data_past_the_end_is_rejected(corpus_base: Path, tmp_path: Path) -> None:
    """Cutting the last tensor's data names that tensor's offset field."""
    data = corpus_base.read_bytes()
    fmap = map_file(data)
    last = fmap.tensors[-1]
    path = _write(tmp_path / "short.gguf", data[:fmap.data_offset + last.offset + 5])
    with pytest.raises(llamakit.GGUFFormatError, match="past the end") as info:
        llamakit.validate_gguf(path)
    assert info.value.offset == last.offset_at and last.name in info.value.field


def test_dimension_overflow_is_rejected(corpus_base: Path, tmp_path: Path) -> None:
    """Dimensions whose product overflows int64 are rejected at the dimension that does it."""
    data = corpus_base.read_bytes()
    tensor = map_file(data).tensors[0]
    path = _write(tmp_path / "big.gguf", data[:tensor.ne_at[0]] + u64(2**40) + u64(2**40)
                  + data[tensor.ne_at[0] + 16:])
    with pytest.raises(llamakit.GGUFFormatError, match="overflows int64") as info:
        llamakit.validate_gguf(path)
    assert info.value.offset == tensor.ne_at[1]


def test_foreign_byte_order_is_named(corpus_base: Path, tmp_path: Path) -> None:
    """A version that reads as 0x03000000 is reported as a byte-order problem."""
    data = corpus_base.read_bytes()
    path = _write(tmp_path / "be.gguf", data[:4] + struct.pack(">I", 3) + data[8:])
    with pytest.raises(llamakit.GGUFFormatError, match="byte order"):
        llamakit.validate_gguf(path)


def test_not_a_regular_file_is_a_load_error(tmp_path: Path) -> None:
    """Missing paths and directories fail before anything is read."""
    with pytest.raises(llamakit.ModelNotFoundError):
        llamakit.validate_gguf(tmp_path / "missing.gguf")
    with pytest.raises(llamakit.ModelLoadError, match="regular file"):
        llamakit.validate_gguf(tmp_path)


def test_load_model_validates_unless_told_not_to(corpus_base: Path, tmp_path: Path) -> None:
    """load_model validates first; validate=False leaves the file to llama.cpp's own checks."""
    path = _write(tmp_path / "cut.gguf", corpus_base.read_bytes()[:1000])
    with pytest.raises(llamakit.GGUFFormatError):
        llamakit.load_model(path, backend="cpu")
    with pytest.raises(llamakit.ModelLoadError) as info:
        llamakit.load_model(path, backend="cpu", validate=False)
    assert not isinstance(info.value, llamakit.GGUFFormatError)
    with pytest.raises(llamakit.ConfigError):
        llamakit.load_model(path, backend="cpu", validate="yes")  # type: ignore[arg-type]


def _split_pair(fmap: FileMap, tmp_path: Path, split_no: tuple[int, bytes]) -> Path:
    first = tmp_path / "model-00001-of-00002.gguf"
    first.write_bytes(rebuild(fmap, extra_kvs=[
        kv_bytes("split.no", _U16, struct.pack("<H", 0)),
        kv_bytes("split.count", _U16, struct.pack("<H", 2)),
        kv_bytes("split.tensors.count", 5, u32(len(fmap.tensors)))]))
    second = b"GGUF" + u32(3) + u64(0) + u64(1) + kv_bytes("split.no", *split_no)
    (tmp_path / "model-00002-of-00002.gguf").write_bytes(second)
    return first


def test_split_shards_are_checked_too(corpus_base: Path, tmp_path: Path) -> None:
    """Further shards of a split model are validated, down to the type of their split.no."""
    fmap = map_file(corpus_base.read_bytes())
    first = _split_pair(fmap, tmp_path, (_U16, struct.pack("<H", 1)))
    summary = llamakit.validate_gguf(first)
    assert [p.name for p in summary.shards] == ["model-00002-of-00002.gguf"]
    with llamakit.load_model(first, backend="cpu") as model:
        assert model.n_vocab == 274
    bad = _split_pair(fmap, tmp_path, (4, u32(1)))
    with pytest.raises(llamakit.GGUFFormatError, match="u16") as info:
        llamakit.validate_gguf(bad)
    assert info.value.path is not None and info.value.path.name == "model-00002-of-00002.gguf"
    assert llamakit.validate_gguf(bad, check_splits=False).shards == ()


def test_string_and_array_types_are_checked(corpus_base: Path, tmp_path: Path) -> None:
    """An unknown value type and a nested array are rejected, naming the key."""
    fmap = map_file(corpus_base.read_bytes())
    nested = kv_bytes("x.nested", ARRAY, u32(ARRAY) + u64(0))
    path = _write(tmp_path / "nested.gguf", rebuild(fmap, extra_kvs=[nested]))
    with pytest.raises(llamakit.GGUFFormatError, match="item type") as info:
        llamakit.validate_gguf(path)
    assert "'x.nested'" in info.value.field
    unknown = kv_bytes("x.odd", 13, gguf_string("?"))
    path = _write(tmp_path / "odd.gguf", rebuild(fmap, extra_kvs=[unknown]))
    with pytest.raises(llamakit.GGUFFormatError, match="value type 13"):
        llamakit.validate_gguf(path)
    fine = kv_bytes("x.text", STRING, gguf_string("ok"))
    assert llamakit.validate_gguf(_write(tmp_path / "ok.gguf", rebuild(fmap, extra_kvs=[fine])))
