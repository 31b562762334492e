"""Importance matrices: llama-imatrix's GGUF and legacy files, mappings, llama.cpp's use."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

import llamakit
from llamakit._quantize.gguf_header import read_header
from llamakit._quantize.imatrix import load_imatrix


def _matrices(model: Path) -> dict[str, int]:
    """Row length of each 2-D block tensor of ``model`` (what an imatrix covers)."""
    return {t.name: t.shape[0] for t in read_header(model).tensors
            if t.name.startswith("blk.") and len(t.shape) == 2}


def _write_gguf_imatrix(path: Path, sums: dict[str, np.ndarray],
                        counts: dict[str, np.ndarray]) -> Path:
    writer = GGUFWriter(path, arch="imatrix")
    writer.add_array("imatrix.datasets", ["wiki.train.raw"])
    writer.add_uint32("imatrix.chunk_count", 7)
    writer.add_uint32("imatrix.chunk_size", 512)
    for name in sums:
        writer.add_tensor(f"{name}.in_sum2", sums[name].astype(np.float32))
        writer.add_tensor(f"{name}.counts", counts[name].astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _write_legacy_imatrix(path: Path, sums: dict[str, np.ndarray], ncall: int) -> Path:
    blob = struct.pack("<i", len(sums))
    for name, values in sums.items():
        raw = name.encode()
        blob += struct.pack("<i", len(raw)) + raw + struct.pack("<ii", ncall, values.size)
        blob += values.astype("<f4").tobytes()
    blob += struct.pack("<i", 3) + struct.pack("<i", 4) + b"wiki"
    path.write_bytes(blob)
    return path


def test_gguf_imatrix_is_averaged_per_expert(tmp_path: Path) -> None:
    """GGUF sums are divided by their per-expert counts; experts never called give 1."""
    sums = {"blk.0.ffn_up.weight": np.array([2.0, 4.0, 6.0, 8.0, 5.0, 5.0])}
    counts = {"blk.0.ffn_up.weight": np.array([2.0, 0.0, 1.0])}
    imatrix = load_imatrix(_write_gguf_imatrix(tmp_path / "m.gguf", sums, counts))
    np.testing.assert_allclose(imatrix.entries["blk.0.ffn_up.weight"],
                               [1.0, 2.0, 1.0, 1.0, 5.0, 5.0])
    assert imatrix.datasets == ("wiki.train.raw",) and imatrix.chunk_count == 7


def test_legacy_imatrix_is_divided_by_calls(tmp_path: Path) -> None:
    """The .dat format's sums are divided by ncall; chunk count and dataset are read."""
    path = _write_legacy_imatrix(tmp_path / "m.dat", {"a.weight": np.array([2.0, 6.0])}, 2)
    imatrix = load_imatrix(path)
    np.testing.assert_allclose(imatrix.entries["a.weight"], [1.0, 3.0])
    assert imatrix.datasets == ("wiki",) and imatrix.chunk_count == 3


def test_imatrix_only_type_quantizes_with_an_imatrix(f16_model: Path, tmp_path: Path) -> None:
    """IQ2_XXS works given an imatrix file, and the output records where it came from."""
    rng = np.random.default_rng(0)
    rows = _matrices(f16_model)
    sums = {name: rng.uniform(0.5, 2.0, n) * 10 for name, n in rows.items()}
    counts = {name: np.array([10.0]) for name in rows}
    path = _write_gguf_imatrix(tmp_path / "imatrix.gguf", sums, counts)
    result = llamakit.quantize(f16_model, tmp_path / "iq2.gguf", "IQ2_XXS", imatrix=path,
                               progress=False)
    assert result.tensor_types["blk.1.attn_q.weight"] == "iq2_xxs"
    header = read_header(result.dst)  # type: ignore[arg-type]
    assert header.value("quantize.imatrix.file") == str(path)
    assert header.value("quantize.imatrix.dataset") == "wiki.train.raw"
    assert header.value("quantize.imatrix.entries_count") == len(rows)
    assert header.value("quantize.imatrix.chunks_count") == 7
    with llamakit.load_model(result.dst, backend="cpu") as model:  # type: ignore[arg-type]
        assert model.info.ftype.startswith("IQ2_XXS")


def test_imatrix_mapping_and_dry_run_size(f16_model: Path, tmp_path: Path) -> None:
    """A {name: values} imatrix works, and the dry run counts its metadata exactly."""
    imatrix = {name: np.ones(n) for name, n in _matrices(f16_model).items()}
    predicted = llamakit.quantize(f16_model, None, "Q4_K_M", imatrix=imatrix, dry_run=True)
    result = llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q4_K_M", imatrix=imatrix,
                               progress=False)
    assert predicted.size == result.size
    assert read_header(result.dst).value("quantize.imatrix.file") is None  # type: ignore[arg-type]


def test_imatrix_of_the_wrong_size_fails_cleanly(f16_model: Path, tmp_path: Path) -> None:
    """An entry that does not match its tensor is llama.cpp's error, reported."""
    imatrix = {"blk.0.attn_q.weight": np.ones(17)}
    with pytest.raises(llamakit.QuantizeError, match="imatrix size 17") as info:
        llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q4_K_M", imatrix=imatrix,
                          progress=False)
    assert info.value.status == 1 and list(tmp_path.iterdir()) == []


def test_imatrix_with_mismatched_pairs_is_refused(tmp_path: Path) -> None:
    """A GGUF imatrix with sums but no counts is not an importance matrix."""
    writer = GGUFWriter(tmp_path / "half.gguf", arch="imatrix")
    writer.add_tensor("a.weight.in_sum2", np.ones(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(llamakit.QuantizeError, match="mismatched sums and counts"):
        load_imatrix(tmp_path / "half.gguf")
