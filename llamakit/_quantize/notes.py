"""What llama-quantize lists next to each type: size and perplexity increase on a
reference model (``" 3.74G, +0.6569 ppl @ Llama-3-8B"``) or the mix's bits per weight.

These notes tell the ``_S``/``_M``/``_L`` mixes apart, which the main ggml type's bits per
weight cannot (Q3_K_S, Q3_K_M and Q3_K_L all have q3_K as main type). They are read from
the ``QUANT_OPTIONS`` table of the pinned tree's ``tools/quantize/quantize.cpp`` when that
tree is on disk (it is wherever the variant was built here), not copied into llamakit.
"""

from __future__ import annotations

import re
from functools import cache

__all__ = ["quantize_notes"]

_ENTRY = re.compile(r'\{\s*"(?P<name>[A-Z0-9_]+)"\s*,\s*LLAMA_FTYPE_[A-Z0-9_]+\s*,\s*'
                    r'"(?P<note>[^"]*)"')


@cache
def quantize_notes() -> dict[str, str]:
    """llama-quantize's note per type name; empty when the tree is not materialised."""
    from .._build.source import _MARKER, _local_dir, pinned_tree_path

    try:
        local = _local_dir()
        root = local if local is not None else pinned_tree_path()
        if local is None and not (root / _MARKER).exists():
            return {}  # never download a 76 MB tree for a listing
        text = (root / "tools" / "quantize" / "quantize.cpp").read_text(encoding="utf-8")
    except (OSError, KeyError, ValueError):
        return {}
    return {m["name"]: m["note"].strip() for m in _ENTRY.finditer(text)}
