"""llamakit's own quantization recipes: a plugin like any other, registered by the core.

``PluginHost`` registers this module under the plugin name ``llamakit`` next to the
entry-point plugins (``LLAMAKIT_DISABLE_PLUGINS=llamakit`` leaves it out). It is also the
worked example of the ``llamakit_register_quantizers`` hook: a third-party package does the
same from its own module, exposed through an entry point in the ``llamakit`` group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import final

from .._plugins.hookspecs import hookimpl
from .plan import QuantizationRecipe, QuantizePlan

__all__ = ["EdgeLayersQ8", "llamakit_register_quantizers"]


@final
class EdgeLayersQ8:
    """Keep the first and the last transformer block at Q8_0; the rest gets ``ftype``.

    The blocks at both ends are the most sensitive to quantization error (llama.cpp's own
    mixes give them more bits, see ``use_more_bits`` in llama-quant.cpp); this recipe goes
    further for a small size cost. Patterns the caller gave in ``tensor_types`` come first
    and so still win.
    """

    name = "edge-layers-q8"
    description = "first and last transformer blocks at Q8_0, the other tensors at the ftype"

    def prepare(self, plan: QuantizePlan) -> QuantizePlan:
        n_layer = plan.n_layer
        if n_layer == 0:
            return plan
        edges = "|".join(str(i) for i in sorted({0, n_layer - 1}))
        return plan.replace(tensor_types=(*plan.tensor_types, (rf"^blk\.({edges})\.", "q8_0")))


@hookimpl
def llamakit_register_quantizers() -> Sequence[QuantizationRecipe]:
    return [EdgeLayersQ8()]
