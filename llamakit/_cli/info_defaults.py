"""What ``llamakit info`` shows of a model's own context defaults: the values llama.cpp
takes from the file when a ``[context]`` knob is unset, read the way its loader reads them
(``llama_model_base::load_hparams``), and the ones llamakit picks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._context_knobs import QUANTIZED_KV_TYPES, default_threads
from .._embeddings import POOLING_NAMES

if TYPE_CHECKING:
    from .._model import Model

__all__ = ["model_defaults", "print_defaults"]

# llama.cpp's values when the file has no key (load_hparams).
_FREQ_BASE = 10000.0
_SCALING_TYPE = "linear"


def _number(metadata: dict[str, str], key: str) -> float | None:
    raw = metadata.get(key)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:  # a per-layer array: not a single default
        return None


def model_defaults(model: Model, facts: dict[str, Any]) -> dict[str, Any]:
    """The model's context defaults; ``facts`` are ``llamakit info``'s (shape from the file)."""
    metadata = model.metadata
    arch = facts["architecture"]

    def key(name: str) -> float | None:
        return _number(metadata, f"{arch}.{name}")

    n_ctx_train = facts["n_ctx_train"] if isinstance(facts["n_ctx_train"], int) else 0
    n_embd, n_head = facts["n_embd"], facts["n_head"]
    head = n_embd // n_head if isinstance(n_embd, int) and isinstance(n_head, int) \
        and n_head > 0 else 0
    head_k = int(key("attention.key_length") or head)
    head_v = int(key("attention.value_length") or head)
    factor = key("rope.scaling.factor") or key("rope.scale_linear") or 0.0
    pooling = key("pooling_type")
    causal = metadata.get(f"{arch}.attention.causal")
    return {
        "n_ctx_train": n_ctx_train,
        "n_ctx": min(n_ctx_train, 4096) if n_ctx_train > 0 else 4096,
        "rope_freq_base": key("rope.freq_base") or _FREQ_BASE,
        "rope_freq_scale": 1.0 / factor if factor else 1.0,
        "rope_scaling_type": metadata.get(f"{arch}.rope.scaling.type", _SCALING_TYPE),
        "yarn_orig_ctx": int(key("rope.scaling.original_context_length") or n_ctx_train),
        "n_swa": int(key("attention.sliding_window") or 0),
        "pooling": POOLING_NAMES.get(int(pooling), "none") if pooling is not None else "none",
        "causal_attention": causal != "false",
        "head_size_k": head_k,
        "head_size_v": head_v,
        "quantized_kv_cache": bool(head_k and head_v and head_k % 32 == 0
                                   and head_v % 32 == 0),
        "quantized_kv_types": sorted(QUANTIZED_KV_TYPES),
        "n_threads": default_threads(),
    }


def print_defaults(defaults: dict[str, Any]) -> None:
    """The ``defaults`` lines of ``llamakit info``."""
    swa = f"sliding window {defaults['n_swa']}" if defaults["n_swa"] else "no sliding window"
    kv = ("q8_0 ... (head size a multiple of 32)" if defaults["quantized_kv_cache"]
          else "f16/bf16/f32 only (head size not a multiple of 32)")
    print(f"{'defaults':12} n_ctx {defaults['n_ctx']} (n_ctx_train {defaults['n_ctx_train']}), "
          f"n_threads {defaults['n_threads']}")
    print(f"{'rope':12} freq_base {defaults['rope_freq_base']:g}, freq_scale "
          f"{defaults['rope_freq_scale']:g}, scaling {defaults['rope_scaling_type']}, "
          f"yarn_orig_ctx {defaults['yarn_orig_ctx']}")
    print(f"{'attention':12} {'causal' if defaults['causal_attention'] else 'non-causal'}, "
          f"{swa}, head size {defaults['head_size_k']}/{defaults['head_size_v']}, "
          f"pooling {defaults['pooling']}")
    print(f"{'kv cache':12} types {kv}")
