"""Synthetic LoRA adapters (GGUF, ``adapter.type = lora``) for a synthetic llama model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["write_lora_adapter"]

_TARGETS = {"attn_q": "q", "attn_k": "kv", "attn_v": "kv", "attn_output": "q",
            "ffn_gate": "ff_up", "ffn_up": "ff_up", "ffn_down": "ff_down"}


def write_lora_adapter(path: str | os.PathLike[str], *, n_embd: int = 64, n_layer: int = 2,
                       n_head: int = 4, n_head_kv: int = 2, n_ff: int = 128,
                       targets: Sequence[str] = ("attn_q", "attn_v"), rank: int = 4,
                       alpha: float = 8.0, std: float = 0.5, seed: int = 0,
                       architecture: str = "llama", general_type: str = "adapter") -> Path:
    """Write a LoRA adapter with random ``lora_a``/``lora_b`` pairs for ``targets`` of every
    layer of a model with the given shape (the defaults match ``write_llama_model``'s)."""
    import gguf  # heavy; only when a test writes an adapter

    head_dim = n_embd // n_head
    outputs = {"q": n_embd, "kv": n_head_kv * head_dim, "ff_up": n_ff, "ff_down": n_embd}
    rng = np.random.default_rng(seed)
    out = Path(path)
    writer = gguf.GGUFWriter(str(out), architecture)
    writer.add_string("general.type", general_type)
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    for layer in range(n_layer):
        for target in targets:
            kind = _TARGETS[target]
            n_in = n_ff if target == "ffn_down" else n_embd
            n_out = outputs[kind]
            name = f"blk.{layer}.{target}.weight"
            # GGUF lists dims innermost first: lora_a is [n_in, rank], lora_b [rank, n_out].
            writer.add_tensor(f"{name}.lora_a",
                              rng.normal(0, std, (rank, n_in)).astype(np.float32))
            writer.add_tensor(f"{name}.lora_b",
                              rng.normal(0, std, (n_out, rank)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
