"""LoRA adapters: load once per model, apply to any of its contexts with a scale."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from ._errors import LoraError
from ._native.lora import LoraHandle
from ._owned import Owned

__all__ = ["LoraAdapter"]


class LoraAdapter(Owned):
    """A LoRA adapter loaded for one model (``Model.load_lora``).

    Apply it with ``Context.apply_lora(adapter, scale)``; several adapters can be applied
    at once. ``close()`` detaches it from every context first.
    """

    _handle: LoraHandle

    def __init__(self, handle: LoraHandle) -> None:
        self._handle = handle
        self.path = Path(handle.path)

    @cached_property
    def _metadata(self) -> dict[str, str]:
        return self._handle.metadata()

    @property
    def metadata(self) -> dict[str, str]:
        """The adapter's GGUF key/values, rendered as strings."""
        self._handle.check_open()
        return dict(self._metadata)

    @property
    def alpha(self) -> float:
        """``adapter.lora.alpha`` (0 when the file does not set it)."""
        value = self.metadata.get("adapter.lora.alpha")
        try:
            return float(value) if value is not None else 0.0
        except ValueError:
            return 0.0

    def __repr__(self) -> str:
        return f"<llamakit.LoraAdapter {self.path.name!r}{' closed' if self.closed else ''}>"


def load_lora(model_handle: object, path: str | os.PathLike[str]) -> LoraAdapter:
    from ._native.model import ModelHandle

    if not isinstance(model_handle, ModelHandle):  # pragma: no cover - internal misuse
        raise LoraError("internal: not a model handle")
    return LoraAdapter(LoraHandle.load(model_handle, os.fspath(path)))
