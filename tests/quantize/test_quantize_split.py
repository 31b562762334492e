"""The GGUF header reader, and split (sharded) models in and out of quantize()."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGUFValueType, GGUFWriter

import llamakit
from llamakit._quantize.gguf_header import read_header, split_files


@pytest.fixture(scope="module")
def split_model(f16_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``f16_model`` as two shards written by gguf-py (the first shard's path)."""
    folder = tmp_path_factory.mktemp("split")
    reader = GGUFReader(f16_model)
    writer = GGUFWriter(folder / "model.gguf", arch="llama", split_max_tensors=12)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        vtype = field.types[0]
        writer.add_key_value(field.name, field.contents(), vtype,
                             sub_type=field.types[-1] if vtype == GGUFValueType.ARRAY else None)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, np.asarray(tensor.data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return folder / "model-00001-of-00002.gguf"


def test_header_matches_gguf_py(f16_model: Path) -> None:
    """Names, shapes, types, offsets and the data offset agree with gguf's reader."""
    ours = read_header(f16_model)
    theirs = GGUFReader(f16_model)
    assert [(t.name, t.shape, t.type, t.offset) for t in ours.tensors] == [
        (t.name, tuple(int(d) for d in t.shape), int(t.tensor_type),
         int(t.data_offset) - theirs.data_offset) for t in theirs.tensors]
    assert ours.data_offset == theirs.data_offset
    assert [kv.key for kv in ours.kvs] == [
        k for k in theirs.fields if not k.startswith("GGUF.")]
    assert ours.value("general.architecture") == "llama"
    assert ours.value("llama.block_count") == 2


@pytest.mark.parametrize("cut", [3, 24, 30, 200, 1000])
def test_truncated_headers_are_value_errors(f16_model: Path, tmp_path: Path, cut: int) -> None:
    """A header cut anywhere is a ValueError, never an IndexError or a hang."""
    path = tmp_path / "cut.gguf"
    path.write_bytes(f16_model.read_bytes()[:cut])
    with pytest.raises(ValueError):
        read_header(path)


def test_split_model_is_found_from_its_first_shard(split_model: Path) -> None:
    """split_files lists the shards by llama.cpp's naming."""
    files = split_files(read_header(split_model))
    assert [f.name for f in files] == ["model-00001-of-00002.gguf", "model-00002-of-00002.gguf"]


def test_split_source_becomes_one_file(split_model: Path, f16_model: Path,
                                       tmp_path: Path) -> None:
    """A split source quantizes into one file, the same as the unsplit model's."""
    result = llamakit.quantize(split_model, tmp_path / "one.gguf", "Q8_0", progress=False)
    reference = llamakit.quantize(f16_model, tmp_path / "ref.gguf", "Q8_0", progress=False)
    assert result.files == (tmp_path / "one.gguf",)
    assert result.tensor_types == reference.tensor_types
    assert result.n_tensors == 21


def test_keep_split_writes_one_file_per_shard(split_model: Path, tmp_path: Path) -> None:
    """keep_split names shards after dst; the dry run predicts their total size."""
    predicted = llamakit.quantize(split_model, None, "Q8_0", keep_split=True, dry_run=True)
    result = llamakit.quantize(split_model, tmp_path / "q8.gguf", "Q8_0", keep_split=True,
                               progress=False)
    assert [f.name for f in result.files] == ["q8-00001-of-00002.gguf", "q8-00002-of-00002.gguf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f.name for f in result.files]
    assert predicted.size == result.size == sum(f.stat().st_size for f in result.files)
    with llamakit.load_model(result.files[0], backend="cpu") as model:
        assert model.info.n_layer == 2 and model.info.ftype == "Q8_0"


def test_keep_split_of_a_single_file_is_one_file(f16_model: Path, tmp_path: Path) -> None:
    """keep_split on an unsplit source writes dst itself, not a one-shard set."""
    result = llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q8_0", keep_split=True,
                               progress=False)
    assert result.files == (tmp_path / "out.gguf",)


def test_later_shard_or_missing_shard_is_refused(split_model: Path, tmp_path: Path) -> None:
    """The second shard alone, or a first shard without the rest, is a QuantizeError."""
    second = split_model.with_name("model-00002-of-00002.gguf")
    with pytest.raises(llamakit.QuantizeError, match="pass the first shard"):
        llamakit.quantize(second, tmp_path / "out.gguf", "Q8_0")
    lonely = tmp_path / "x-00001-of-00002.gguf"
    lonely.write_bytes(split_model.read_bytes())
    with pytest.raises(llamakit.QuantizeError, match="shard x-00002-of-00002.gguf is missing"):
        llamakit.quantize(lonely, tmp_path / "out.gguf", "Q8_0")
