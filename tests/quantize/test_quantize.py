"""Quantizing a synthetic model: each type loads and generates, sizes, quality, dry runs."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

import llamakit
from llamakit._quantize.gguf_header import read_header

TYPES = ["Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"]
# llama_ftype_name of each, as llama.cpp reports a loaded model's file type.
DESCRIPTIONS = {"Q8_0": "Q8_0", "Q4_0": "Q4_0", "Q4_K_M": "Q4_K - Medium",
                "Q5_K_M": "Q5_K - Medium", "Q6_K": "Q6_K"}
TEXT = ("The quick brown fox jumps over the lazy dog while the cat sleeps by the warm fire, "
        "and far away a ship sails slowly across the quiet grey sea towards the harbour. "
        "In the morning the fishermen mend their nets, the baker lights his oven, and children "
        "run down the narrow streets to the school on the hill above the old stone bridge.")

Quantized = Callable[[str], llamakit.QuantizeResult]


@pytest.mark.usefixtures("decodes_quantized")
@pytest.mark.parametrize("ftype", TYPES)
def test_each_type_loads_and_generates(quantized: Quantized, ftype: str) -> None:
    """The quantized file loads with its file type and generates greedy tokens."""
    result = quantized(ftype)
    assert result.dst is not None and result.dst.is_file()
    assert result.size == result.dst.stat().st_size
    with llamakit.load_model(result.dst, backend="cpu") as model:
        assert model.info.ftype == DESCRIPTIONS[ftype]
        with model.new_context(n_ctx=128, n_threads=2) as ctx:
            out = ctx.generate("Once upon a time", max_new_tokens=8, temperature=0)
    assert out.tokens or out.finish_reason == "eog"


def test_sizes_shrink_with_fewer_bits(f16_model: Path, quantized: Quantized) -> None:
    """F16 > Q8_0 > Q6_K > Q5_K_M > Q4_K_M > Q4_0, and each is near its bits per weight."""
    sizes = [f16_model.stat().st_size] + [quantized(t).size for t in
                                          ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0")]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    nominal = {t.name: t.bits_per_weight for t in llamakit.quantization_types()}
    for ftype in TYPES:
        # norms stay F32 and the mixes give the output tensor Q6_K, never fewer bits
        assert nominal[ftype] <= quantized(ftype).bits_per_weight < nominal[ftype] + 1.5


def test_weights_take_the_chosen_type(quantized: Quantized) -> None:
    """Q8_0 turns every matrix into q8_0; 1-D norms stay f32."""
    result = quantized("Q8_0")
    for tensor in read_header(result.dst).tensors:  # type: ignore[arg-type]
        expected = "q8_0" if len(tensor.shape) == 2 else "f32"
        assert result.tensor_types[tensor.name] == expected


def _top1(model: llamakit.Model, tokens: list[int]) -> list[int | None]:
    """Greedy next token after each prefix (teacher forcing); None for end-of-generation."""
    found: list[int | None] = []
    with model.new_context(n_ctx=256, n_threads=2) as ctx:
        for end in range(1, len(tokens)):
            out = ctx.generate(tokens[:end], max_new_tokens=1, temperature=0)
            found.append(out.tokens[0] if out.tokens else None)
    return found


@pytest.mark.usefixtures("decodes_quantized")
def test_q8_0_keeps_greedy_top1_of_f16(f16_model: Path, quantized: Quantized) -> None:
    """On a fixed text, Q8_0's greedy next token equals F16's at >= 90% of positions."""
    with llamakit.load_model(f16_model, backend="cpu") as f16:
        tokens = f16.tokenize(TEXT)
        reference = _top1(f16, tokens)
    with llamakit.load_model(quantized("Q8_0").dst, backend="cpu") as q8:  # type: ignore[arg-type]
        candidate = _top1(q8, tokens)
    assert len(reference) >= 64
    agree = sum(a == b for a, b in zip(reference, candidate, strict=True)) / len(reference)
    assert agree >= 0.9, agree


def test_dry_run_predicts_the_exact_size(f16_model: Path, quantized: Quantized,
                                         tmp_path: Path) -> None:
    """A dry run writes nothing and predicts the size and types of the real output."""
    target = tmp_path / "never.gguf"
    predicted = llamakit.quantize(f16_model, target, "Q4_K_M", dry_run=True, progress=False)
    real = quantized("Q4_K_M")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    assert predicted.dry_run and predicted.files == () and predicted.dst is None
    assert predicted.size == real.size
    assert predicted.tensor_types == real.tensor_types
    assert predicted.tensor_bytes == real.tensor_bytes


@pytest.mark.usefixtures("info_logging")
def test_dry_run_agrees_with_llama_cpp_log(f16_model: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """The predicted tensor bytes match llama.cpp's own "quant size" line."""
    with caplog.at_level("INFO", logger="llamakit.native"):
        result = llamakit.quantize(f16_model, None, "Q5_K_M", dry_run=True, progress=False)
    lines = [r.getMessage() for r in caplog.records if "quant size" in r.getMessage()]
    match = re.search(r"quant size\s*=\s*([\d.]+) MiB \(([\d.]+) BPW\)", lines[-1])
    assert match is not None
    assert abs(float(match.group(1)) - result.tensor_bytes / 2**20) < 0.006
    assert abs(float(match.group(2)) - result.bits_per_weight) < 0.006


def test_copy_keeps_every_type(f16_model: Path, tmp_path: Path) -> None:
    """COPY rewrites the file without changing a tensor."""
    result = llamakit.quantize(f16_model, tmp_path / "copy.gguf", "copy", progress=False)
    source = {t.name: t.type for t in read_header(f16_model).tensors}
    assert {n: t for n, t in result.tensor_types.items()} == {
        n: {0: "f32", 1: "f16"}[t] for n, t in source.items()}


def test_overrides_choose_tensor_types(f16_model: Path, tmp_path: Path) -> None:
    """tensor_types, output_tensor_type and token_embedding_type win over the mix."""
    result = llamakit.quantize(
        f16_model, tmp_path / "mixed.gguf", "Q4_0", tensor_types={r"attn_q\.": "Q8_0"},
        output_tensor_type="f16", token_embedding_type="q5_0", progress=False)
    types = result.tensor_types
    assert types["blk.0.attn_q.weight"] == types["blk.1.attn_q.weight"] == "q8_0"
    assert types["blk.0.attn_k.weight"] == "q4_0"
    assert types["output.weight"] == "f16"
    assert types["token_embd.weight"] == "q5_0"


def test_pure_skips_the_mix(f16_model: Path, tmp_path: Path) -> None:
    """pure=True gives every matrix the main type, the output tensor included."""
    result = llamakit.quantize(f16_model, tmp_path / "pure.gguf", "Q4_K_M", pure=True,
                               progress=False)
    matrices = {n: t for n, t in result.tensor_types.items() if not n.endswith("norm.weight")}
    assert set(matrices.values()) == {"q4_K"}


def test_leave_output_tensor(f16_model: Path, tmp_path: Path) -> None:
    """quantize_output_tensor=False keeps output.weight as it was."""
    result = llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q8_0",
                               quantize_output_tensor=False, progress=False)
    assert result.tensor_types["output.weight"] == "f16"
    assert result.tensor_types["blk.0.ffn_up.weight"] == "q8_0"


def test_requantizing_needs_allow_requantize(quantized: Quantized, tmp_path: Path) -> None:
    """A quantized source is refused unless allow_requantize=True."""
    source = quantized("Q8_0").dst
    with pytest.raises(llamakit.QuantizeError, match="requantizing") as info:
        llamakit.quantize(source, tmp_path / "q4.gguf", "Q4_0", progress=False)  # type: ignore[arg-type]
    assert info.value.status == 1 and not (tmp_path / "q4.gguf").exists()
    assert "allow_requantize=True" in str(info.value)
    assert "--allow-requantize" in str(info.value)
    result = llamakit.quantize(source, tmp_path / "q4.gguf", "Q4_0",  # type: ignore[arg-type]
                               allow_requantize=True, progress=False)
    assert result.tensor_types["blk.0.attn_k.weight"] == "q4_0"


def test_an_existing_destination_is_replaced(f16_model: Path, tmp_path: Path) -> None:
    """dst is overwritten, and no temporary file stays behind."""
    target = tmp_path / "model.gguf"
    target.write_bytes(b"old")
    result = llamakit.quantize(f16_model, target, "Q8_0", progress=False)
    assert target.read_bytes()[:4] == b"GGUF" and result.size == target.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]
