"""The embedded default model of the README's main command.

Until a trained demo model ships, it is a synthetic llama-shaped model with random
weights and llama.cpp's llama-spm tokenizer, written once into the cache.
"""

from __future__ import annotations

from pathlib import Path

from ._build.cache import cache_dir

__all__ = ["demo_model_path"]


def demo_model_path() -> Path:
    """Path of the demo GGUF, written on first use (random weights, real tokenizer)."""
    from .testing import write_llama_model

    path = cache_dir() / "demo" / "synthetic-llama-spm-random-weights.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_llama_model(path, vocab="llama-spm", n_embd=128, n_layer=4, n_head=4,
                          n_head_kv=2, n_ff=256, seed=1234)
    return path
