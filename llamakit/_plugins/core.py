"""llamakit's own hook implementations, registered as the plugin ``llamakit`` like any
other: its quantization recipes and its model resolvers (``hf://``, packages)."""

from __future__ import annotations

from collections.abc import Sequence

from .._quantize.recipes import llamakit_register_quantizers
from .._resolver_spec import ModelResolver
from .hookspecs import hookimpl

__all__ = ["llamakit_register_model_resolvers", "llamakit_register_quantizers"]


@hookimpl
def llamakit_register_model_resolvers() -> Sequence[ModelResolver]:
    from .._hf_resolver import hf_resolver
    from .._package_resolver import package_resolver

    return [hf_resolver(), package_resolver()]
