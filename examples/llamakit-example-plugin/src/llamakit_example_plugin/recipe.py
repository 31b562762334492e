"""``example-attn-q8``: a quantization recipe that keeps every attention weight at Q8_0.

Attention projections are a small share of a model's weights and among the most sensitive
to quantization; keeping them at 8 bits costs little space. The feed-forward and other
tensors get the requested file type. Patterns the caller passed in ``tensor_types`` come
first, so they still win.
"""

from __future__ import annotations

from llamakit import QuantizePlan

__all__ = ["AttentionQ8"]

ATTENTION = r"\.attn_(q|k|v|qkv|output)\.weight$"


class AttentionQ8:
    """Implements :class:`llamakit.QuantizationRecipe`."""

    name = "example-attn-q8"
    description = "attention weights at Q8_0, the other tensors at the ftype"

    def prepare(self, plan: QuantizePlan) -> QuantizePlan:
        return plan.replace(tensor_types=(*plan.tensor_types, (ATTENTION, "q8_0")))
