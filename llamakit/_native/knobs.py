"""Filling ``llama_context_params`` from validated context knobs (see ``_context_knobs``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["set_knobs"]

_FLASH_ATTN = {"auto": "LLAMA_FLASH_ATTN_TYPE_AUTO", "on": "LLAMA_FLASH_ATTN_TYPE_ENABLED",
               "off": "LLAMA_FLASH_ATTN_TYPE_DISABLED"}
_ROPE_SCALING = {None: "LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED",
                 "none": "LLAMA_ROPE_SCALING_TYPE_NONE",
                 "linear": "LLAMA_ROPE_SCALING_TYPE_LINEAR",
                 "yarn": "LLAMA_ROPE_SCALING_TYPE_YARN",
                 "longrope": "LLAMA_ROPE_SCALING_TYPE_LONGROPE"}
# llama.cpp's "take it from the model" value of each optional float/int field.
_FROM_MODEL = {"rope_freq_base": 0.0, "rope_freq_scale": 0.0, "yarn_ext_factor": -1.0,
               "yarn_attn_factor": -1.0, "yarn_beta_fast": -1.0, "yarn_beta_slow": -1.0,
               "yarn_orig_ctx": 0}


def set_knobs(lib: Any, params: Any, knobs: Mapping[str, Any]) -> None:
    """Write ``knobs`` (already validated) into the ``llama_context_params`` ``params``."""
    if not knobs:
        return
    params.flash_attn_type = getattr(lib, _FLASH_ATTN[knobs["flash_attn"]])
    params.type_k = getattr(lib, f"GGML_TYPE_{knobs['type_k'].upper()}")
    params.type_v = getattr(lib, f"GGML_TYPE_{knobs['type_v'].upper()}")
    params.rope_scaling_type = getattr(lib, _ROPE_SCALING[knobs["rope_scaling_type"]])
    for name, unset in _FROM_MODEL.items():
        value = knobs[name]
        setattr(params, name, unset if value is None else value)
    params.swa_full = knobs["swa_full"]
    params.offload_kqv = knobs["offload_kqv"]
    params.op_offload = knobs["op_offload"]
