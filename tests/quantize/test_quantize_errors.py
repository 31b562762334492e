"""Every bad input to quantize() is a QuantizeError raised before any work, never a crash."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import llamakit


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("ftype", ["Q9_9", "", "q4_k_x", 15, None])
def test_unknown_type(f16_model: Path, tmp_path: Path, ftype: Any) -> None:
    """An unknown ftype names the known ones."""
    with pytest.raises(llamakit.QuantizeError, match="Q4_K_M"):
        llamakit.quantize(f16_model, tmp_path / "out.gguf", ftype, progress=False)
    assert _leftovers(tmp_path) == []


def test_missing_source(tmp_path: Path) -> None:
    """A source that does not exist is an error naming it."""
    with pytest.raises(llamakit.QuantizeError, match="not found") as info:
        llamakit.quantize(tmp_path / "nope.gguf", tmp_path / "out.gguf", "Q8_0")
    assert info.value.path == tmp_path / "nope.gguf"


def test_source_is_a_directory(tmp_path: Path) -> None:
    """A directory is not a model."""
    with pytest.raises(llamakit.QuantizeError, match="not a file"):
        llamakit.quantize(tmp_path, tmp_path / "out.gguf", "Q8_0")


@pytest.mark.parametrize("content", [b"", b"GGML\0\0\0\0", b"not a model at all" * 10])
def test_source_is_not_gguf(tmp_path: Path, content: bytes) -> None:
    """A file without the GGUF magic is refused."""
    source = tmp_path / "model.bin"
    source.write_bytes(content)
    with pytest.raises(llamakit.QuantizeError, match="not a GGUF"):
        llamakit.quantize(source, tmp_path / "out.gguf", "Q8_0")


def test_source_is_truncated(f16_model: Path, tmp_path: Path) -> None:
    """A GGUF cut inside its header is refused before llama.cpp reads it."""
    source = tmp_path / "cut.gguf"
    source.write_bytes(f16_model.read_bytes()[:4096])
    with pytest.raises(llamakit.QuantizeError, match="not a valid GGUF"):
        llamakit.quantize(source, tmp_path / "out.gguf", "Q8_0")


def test_source_with_cut_data_is_refused(f16_model: Path, tmp_path: Path) -> None:
    """A whole header with missing tensor data is refused by the GGUF validator."""
    source = tmp_path / "short.gguf"
    source.write_bytes(f16_model.read_bytes()[:6_000_000])
    with pytest.raises(llamakit.QuantizeError, match="not a valid GGUF"):
        llamakit.quantize(source, tmp_path / "out.gguf", "Q8_0", progress=False)
    assert _leftovers(tmp_path) == ["short.gguf"]


def test_vocab_only_source(llama_cpp_dir: Path, tmp_path: Path) -> None:
    """A vocab-only GGUF has nothing to quantize."""
    vocab = llama_cpp_dir / "models" / "ggml-vocab-llama-spm.gguf"
    with pytest.raises(llamakit.QuantizeError, match="no tensors"):
        llamakit.quantize(vocab, tmp_path / "out.gguf", "Q8_0")


def test_destination_is_the_source(f16_model: Path, tmp_path: Path) -> None:
    """The same file under another spelling, a symbolic link or a hard link is refused."""
    copy = tmp_path / "model.gguf"
    copy.write_bytes(f16_model.read_bytes())
    (tmp_path / "sym.gguf").symlink_to(copy)
    os.link(copy, tmp_path / "hard.gguf")
    (tmp_path / "sub").mkdir()
    for dst in (copy, tmp_path / "sub" / ".." / "model.gguf", tmp_path / "sym.gguf",
                tmp_path / "hard.gguf"):
        with pytest.raises(llamakit.QuantizeError, match="source model itself"):
            llamakit.quantize(copy, dst, "Q8_0")
    assert copy.read_bytes() == f16_model.read_bytes()


def test_destination_folder_missing(f16_model: Path, tmp_path: Path) -> None:
    """A destination in a folder that does not exist is refused."""
    with pytest.raises(llamakit.QuantizeError, match="folder does not exist"):
        llamakit.quantize(f16_model, tmp_path / "no" / "out.gguf", "Q8_0")


def test_destination_is_a_directory(f16_model: Path, tmp_path: Path) -> None:
    """A folder is not a destination file."""
    with pytest.raises(llamakit.QuantizeError, match="is a directory"):
        llamakit.quantize(f16_model, tmp_path, "Q8_0")


def test_destination_needed_unless_dry_run(f16_model: Path) -> None:
    """dst=None is only for dry runs."""
    with pytest.raises(llamakit.QuantizeError, match="dry_run"):
        llamakit.quantize(f16_model, None, "Q8_0")


def test_missing_imatrix_file(f16_model: Path, tmp_path: Path) -> None:
    """An imatrix path that does not exist is refused."""
    with pytest.raises(llamakit.QuantizeError, match="imatrix file not found"):
        llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q4_K_M",
                          imatrix=tmp_path / "none.dat")
    assert _leftovers(tmp_path) == []


def test_unreadable_imatrix_file(f16_model: Path, tmp_path: Path) -> None:
    """A file that is not an importance matrix is refused."""
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"\x01\x00")
    with pytest.raises(llamakit.QuantizeError, match="not an importance matrix"):
        llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q4_K_M", imatrix=bad)


@pytest.mark.parametrize("tensor_types, match", [
    ({"attn_(q": "q8_0"}, "not a valid regular expression"),
    ({"": "q8_0"}, "empty pattern"),
    ({"attn_q": "q9_9"}, "not a ggml type"),
    ({"attn_q": "i32"}, "not a ggml type"),
    ({"attn_q": "q8_1"}, "not a ggml type"),
    ("attn_q=q8_0", "not a string"),
    ([("attn_q",)], "not a .pattern, type. pair"),
    (42, "must be a mapping"),
])
def test_bad_tensor_types(f16_model: Path, tmp_path: Path, tensor_types: Any,
                          match: str) -> None:
    """Invalid patterns and types in tensor_types are refused."""
    with pytest.raises(llamakit.QuantizeError, match=match):
        llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q4_0", tensor_types=tensor_types)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("option", ["output_tensor_type", "token_embedding_type"])
def test_bad_tensor_type_name(f16_model: Path, tmp_path: Path, option: str) -> None:
    """A type ggml cannot quantize to is refused with the valid names."""
    with pytest.raises(llamakit.QuantizeError, match=f"{option}.*q4_K"):
        llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q4_0", **{option: "i8"})


def test_embedding_type_that_does_not_fit_rows(synthetic_model: Callable[..., Path],
                                                tmp_path: Path) -> None:
    """A K-quant embedding type on rows of 64 values would abort ggml: refused instead."""
    narrow = synthetic_model(dtype="f16")  # n_embd 64
    with pytest.raises(llamakit.QuantizeError, match="token_embd.weight.*blocks of 256"):
        llamakit.quantize(narrow, tmp_path / "out.gguf", "Q8_0", token_embedding_type="q4_K")
    with pytest.raises(llamakit.QuantizeError, match="output.weight.*blocks of 256"):
        llamakit.quantize(narrow, tmp_path / "out.gguf", "Q8_0", output_tensor_type="q6_K")
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("options", [
    {"output_tensor_type": "iq2_xxs"},
    {"token_embedding_type": "iq1_s"},
    {"tensor_types": {"output": "iq2_xs"}},
    {"pure": True},
])
def test_imatrix_type_on_embeddings_or_output(f16_model: Path, tmp_path: Path,
                                              options: dict[str, Any]) -> None:
    """An imatrix-only type on token_embd/output without imatrix values would abort ggml."""
    ftype = "IQ2_XXS" if options.get("pure") else "Q4_0"
    with pytest.raises(llamakit.QuantizeError, match="needs importance-matrix values"):
        llamakit.quantize(f16_model, tmp_path / "out.gguf", ftype, **options)


def test_type_needing_an_imatrix_fails_cleanly(f16_model: Path, tmp_path: Path) -> None:
    """IQ2_XXS without an imatrix is llama.cpp's refusal, reported with its reason."""
    with pytest.raises(llamakit.QuantizeError, match="requires an imatrix") as info:
        llamakit.quantize(f16_model, tmp_path / "out.gguf", "IQ2_XXS", progress=False)
    assert info.value.status == 1
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("options, match", [
    ({"nthread": 0}, "nthread"),
    ({"nthread": "4"}, "nthread"),
    ({"nthread": True}, "nthread"),
    ({"pure": "yes"}, "pure must be True or False"),
    ({"dry_run": 1}, "dry_run must be True or False"),
    ({"keep_split": None}, "keep_split must be True or False"),
    ({"progress": "bar"}, "progress must be"),
    ({"imatrix": 3.5}, "imatrix must be"),
    ({"imatrix": {"blk.0.attn_q.weight": []}}, "non-empty 1-D"),
    ({"imatrix": {"blk.0.attn_q.weight": [float("nan")] * 256}}, "non-finite"),
    ({"recipe": "no-such-recipe"}, "unknown quantization recipe"),
])
def test_bad_options(f16_model: Path, tmp_path: Path, options: dict[str, Any],
                     match: str) -> None:
    """Wrongly typed options are refused with the option's name."""
    with pytest.raises(llamakit.QuantizeError, match=match):
        llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q8_0", **options)
    assert _leftovers(tmp_path) == []


def test_source_must_be_a_path(tmp_path: Path) -> None:
    """A non-path source is a QuantizeError, not a TypeError from deep inside."""
    with pytest.raises(llamakit.QuantizeError, match="src must be a path"):
        llamakit.quantize(42, tmp_path / "out.gguf", "Q8_0")  # type: ignore[arg-type]


def test_errors_are_value_errors() -> None:
    """QuantizeError is a LlamakitError and a ValueError, carrying path and status."""
    err = llamakit.QuantizeError("x", path="a.gguf", status=1)
    assert isinstance(err, llamakit.LlamakitError) and isinstance(err, ValueError)
    assert err.path == Path("a.gguf") and err.status == 1
