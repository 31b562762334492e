"""LoRA adapters on a ``Context``: apply, remove, list (built on ``ContextCore``)."""

from __future__ import annotations

from ._context_core import ContextCore
from ._errors import LoraError
from ._lora import LoraAdapter

__all__ = ["LoraMixin"]


class LoraMixin(ContextCore):
    """``apply_lora``, ``remove_lora``, ``clear_loras`` and ``loras`` of ``Context``."""

    _applied_loras: dict[LoraAdapter, float]

    @property
    def loras(self) -> dict[LoraAdapter, float]:
        """The adapters applied to this context, with their scales."""
        self._handle.check_open()
        return dict(self._lora_objects())

    def _lora_objects(self) -> dict[LoraAdapter, float]:
        applied: dict[LoraAdapter, float] = getattr(self, "_applied_loras", {})
        live = {a: s for a, s in applied.items() if not a.closed}
        self._applied_loras = live
        return live

    def _set_loras(self, wanted: dict[LoraAdapter, float]) -> None:
        with self._lock:
            # The handle empties the KV cache (computed with other weights) and bumps its
            # memory epoch, which makes the next generate forget the cached prefix.
            self._handle.set_loras({a._handle: s for a, s in wanted.items()})
            self._applied_loras = dict(wanted)

    def apply_lora(self, adapter: LoraAdapter, scale: float = 1.0) -> None:
        """Apply ``adapter`` (of this context's model) with ``scale``; applying it again
        changes its scale."""
        if not isinstance(adapter, LoraAdapter):
            raise LoraError(f"expected a LoraAdapter, got {type(adapter).__name__}")
        if adapter._handle.model is not self.model._handle:
            raise LoraError("this adapter was loaded for another model; load it with "
                            "this context's model.load_lora()", path=adapter.path)
        adapter._handle.check_open()
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) \
                or scale != scale or scale in (float("inf"), float("-inf")):
            raise LoraError(f"scale must be a finite number, got {scale!r}")
        self._set_loras({**self._lora_objects(), adapter: float(scale)})

    def remove_lora(self, adapter: LoraAdapter) -> None:
        """Stop applying ``adapter``; an adapter that is not applied is an error."""
        current = self._lora_objects()
        if adapter not in current:
            raise LoraError(f"{adapter!r} is not applied to this context")
        self._set_loras({a: s for a, s in current.items() if a is not adapter})

    def clear_loras(self) -> None:
        """Remove every applied adapter."""
        self._set_loras({})
