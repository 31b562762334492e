"""write_llama_model's reuse_weights option (fast large benchmark models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFReader

from llamakit.testing import write_llama_model


def _tensors(path: Path) -> dict[str, np.ndarray]:
    return {t.name: np.array(t.data) for t in GGUFReader(path).tensors}


def test_reuse_weights_repeats_one_array_per_shape(tmp_path: Path) -> None:
    """With reuse_weights, every tensor of one shape holds the same random values."""
    path = write_llama_model(tmp_path / "reused.gguf", n_layer=3, reuse_weights=True)
    tensors = _tensors(path)
    for name in ("attn_q", "attn_k", "ffn_gate", "ffn_down"):
        first = tensors[f"blk.0.{name}.weight"]
        for layer in (1, 2):
            assert np.array_equal(tensors[f"blk.{layer}.{name}.weight"], first)
    assert np.array_equal(tensors["blk.2.attn_output.weight"], tensors["blk.0.attn_q.weight"])
    assert np.array_equal(tensors["blk.1.ffn_up.weight"], tensors["blk.0.ffn_gate.weight"])
    assert not np.array_equal(tensors["blk.0.attn_q.weight"][:1],
                              tensors["blk.0.attn_q.weight"][1:2])
    assert 0.01 < float(tensors["blk.1.ffn_down.weight"].std()) < 0.03


def test_reuse_weights_keeps_the_layout_and_is_deterministic(tmp_path: Path) -> None:
    """A reused-weights file has the default file's size and tensors, and repeats itself."""
    default = write_llama_model(tmp_path / "default.gguf", n_layer=3, dtype="f16")
    first = write_llama_model(tmp_path / "a.gguf", n_layer=3, dtype="f16", reuse_weights=True)
    second = write_llama_model(tmp_path / "b.gguf", n_layer=3, dtype="f16", reuse_weights=True)
    assert first.read_bytes() == second.read_bytes()
    assert first.stat().st_size == default.stat().st_size
    shapes = {name: a.shape for name, a in _tensors(default).items()}
    assert {name: a.shape for name, a in _tensors(first).items()} == shapes
