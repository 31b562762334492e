"""``SamplerHandle``: a ``llama_sampler`` chain built from validated stages."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .._errors import SamplerError
from .context import ContextHandle
from .handle import Handle
from .lib import NativeLib
from .model import ModelHandle

__all__ = ["SamplerHandle"]


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SamplerError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class SamplerHandle(Handle):
    """A ``llama_sampler`` chain."""

    kind = "sampler"

    def __init__(self, native: NativeLib, ptr: Any, model: ModelHandle | None,
                 names: Sequence[str]) -> None:
        super().__init__(native, ptr, native.lib.llama_sampler_free)
        self.names = tuple(names)
        self.model = model
        if model is not None:
            model.add_dependent(self)

    @classmethod
    def chain(cls, native: NativeLib, stages: Sequence[tuple[str, dict[str, Any]]],
              model: ModelHandle | None = None) -> SamplerHandle:
        """Build a chain from ``(stage, params)`` pairs, validated before any C call."""
        lib, ffi = native.lib, native.ffi
        built = [cls._stage(native, name, params, model) for name, params in stages]
        params = lib.llama_sampler_chain_default_params()
        params.no_perf = False
        chain = lib.llama_sampler_chain_init(params)
        for stage in built:
            lib.llama_sampler_chain_add(chain, stage)  # the chain owns it from here on
        del ffi
        return cls(native, chain, model, [name for name, _ in stages])

    @staticmethod
    def _stage(native: NativeLib, name: str, p: dict[str, Any],
               model: ModelHandle | None) -> Any:
        lib, ffi = native.lib, native.ffi
        if name == "greedy":
            ptr = lib.llama_sampler_init_greedy()
        elif name == "dist":
            ptr = lib.llama_sampler_init_dist(p["seed"])
        elif name == "top_k":
            ptr = lib.llama_sampler_init_top_k(p["k"])
        elif name == "top_p":
            ptr = lib.llama_sampler_init_top_p(_finite("top_p", p["p"]), p.get("min_keep", 1))
        elif name == "min_p":
            ptr = lib.llama_sampler_init_min_p(_finite("min_p", p["p"]), p.get("min_keep", 1))
        elif name == "typical":
            ptr = lib.llama_sampler_init_typical(_finite("typical_p", p["p"]),
                                                 p.get("min_keep", 1))
        elif name == "temp":
            ptr = lib.llama_sampler_init_temp(_finite("temperature", p["t"]))
        else:
            raise SamplerError(f"unknown sampler stage {name!r}")
        if ptr == ffi.NULL:
            raise SamplerError(f"llama.cpp could not create the {name!r} sampler")
        del model
        return ptr

    def sample(self, context: ContextHandle, index: int = -1) -> int:
        return int(self.lib.llama_sampler_sample(self.ptr, context.ptr, index))

    def accept(self, token: int) -> None:
        self.lib.llama_sampler_accept(self.ptr, token)

    def reset(self) -> None:
        self.lib.llama_sampler_reset(self.ptr)

    def seed(self) -> int:
        return int(self.lib.llama_sampler_get_seed(self.ptr))
