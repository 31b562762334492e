"""The ``example-attn-q8`` quantization recipe, through ``llamakit.quantize``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import llamakit
import pytest

from llamakit_example_plugin import model_stats


@pytest.fixture(scope="module")
def f16_model(synthetic_model: Callable[..., Path]) -> Path:
    return synthetic_model(dtype="f16")


def is_attention(name: str) -> bool:
    return any(f".attn_{part}.weight" in name for part in ("q", "k", "v", "output"))


def test_listed_with_the_plugin() -> None:
    recipe = llamakit.quantization_recipes()["example-attn-q8"]
    assert "Q8_0" in recipe.description


def test_keeps_attention_at_q8_0(f16_model: Path, tmp_path: Path) -> None:
    plain = llamakit.quantize(f16_model, tmp_path / "plain.gguf", "Q4_0", progress=False)
    mixed = llamakit.quantize(f16_model, tmp_path / "mixed.gguf", "Q4_0",
                              recipe="example-attn-q8", progress=False)
    attention = sorted(name for name in mixed.tensor_types if is_attention(name))
    assert len(attention) == 8  # q, k, v, output in each of the 2 blocks
    assert {plain.tensor_types[name] for name in attention} == {"q4_0"}
    assert {mixed.tensor_types[name] for name in attention} == {"q8_0"}
    ffn = [name for name in mixed.tensor_types if ".ffn_" in name and name.endswith(".weight")
           and "norm" not in name]
    assert ffn and {mixed.tensor_types[name] for name in ffn} == {"q4_0"}
    assert mixed.size > plain.size
    # on disk: the 8 attention weights are Q8_0 on top of what plain Q4_0 puts there
    counts = {name: {s.type: s.tensors for s in model_stats(tmp_path / name)[1]}
              for name in ("plain.gguf", "mixed.gguf")}
    assert counts["mixed.gguf"]["q8_0"] == counts["plain.gguf"].get("q8_0", 0) + 8
    assert counts["mixed.gguf"]["q4_0"] == counts["plain.gguf"]["q4_0"] - 8


def test_callers_tensor_types_still_win(f16_model: Path, tmp_path: Path) -> None:
    result = llamakit.quantize(f16_model, None, "Q4_0", recipe="example-attn-q8",
                               tensor_types={r"blk\.0\.attn_q\.weight": "f16"}, dry_run=True,
                               progress=False)
    assert result.tensor_types["blk.0.attn_q.weight"] == "f16"
    assert result.tensor_types["blk.1.attn_q.weight"] == "q8_0"
