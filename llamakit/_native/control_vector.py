"""Applying a control vector (``llama_set_adapter_cvec``) to a context."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .._errors import ControlVectorError
from .handle import pinned

if TYPE_CHECKING:
    from .context import ContextHandle

__all__ = ["set_control_vector"]


@pinned
def set_control_vector(handle: ContextHandle, data: npt.NDArray[np.float32] | None,
                       il_start: int = -1, il_end: int = -1) -> None:
    """Apply ``data`` (rows = layers 1..n, already checked against the model) to layers
    ``il_start..il_end``, or clear the vector (None). The KV cache is emptied: what it
    holds was computed without (or with another) vector."""
    lib, ffi = handle.lib, handle.ffi
    ptr = handle.ptr
    if data is None:
        status = lib.llama_set_adapter_cvec(ptr, ffi.NULL, 0, 0, -1, -1)
    else:
        flat = np.ascontiguousarray(data, dtype=np.float32)
        buffer = ffi.from_buffer("float[]", flat)
        status = lib.llama_set_adapter_cvec(ptr, buffer, flat.size, flat.shape[1], il_start,
                                            il_end)
        del buffer
    if status != 0:
        raise ControlVectorError("llama.cpp could not apply the control vector (see the "
                                 "'llamakit.native' log)")
    handle.clear_memory()
    handle.memory_epoch += 1
