"""Control vectors: a direction added to the hidden state after each layer (llama.cpp's
``llama_set_adapter_cvec``), read from the GGUF files llama.cpp's tools write.

The file format is the one ``common_control_vector_load`` (llama.cpp's ``common/``) reads:
one 1-D F32 tensor ``direction.<layer>`` per layer, layers counted from 1 (layer 0 never
gets one); several tensors for one layer add up, and the strength scales them all.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

from ._context_core import ContextCore
from ._errors import ControlVectorError
from ._native.control_vector import set_control_vector

if TYPE_CHECKING:
    from ._model import Model

__all__ = ["ControlVectorMixin", "ControlVectorSource", "read_control_vector"]

#: A control vector file, a 2-D array (row i = layer i + 1) or ``{layer: vector}``.
ControlVectorSource = Union[str, "os.PathLike[str]", npt.ArrayLike, Mapping[int, npt.ArrayLike]]

_DIRECTION = re.compile(r"^direction\.(\d+)$")


def read_control_vector(path: str | os.PathLike[str]) -> dict[int, npt.NDArray[np.float32]]:
    """The directions of a control vector file, by layer (1-based), as llama.cpp reads it."""
    from gguf import GGMLQuantizationType, GGUFReader

    where = Path(path)
    if not where.is_file():
        raise ControlVectorError(f"control vector file not found: {where}", path=where)
    try:
        reader = GGUFReader(where)
    except (ValueError, OSError, IndexError, KeyError) as exc:
        raise ControlVectorError(f"{where} is not a readable GGUF control vector: {exc}",
                                 path=where) from None
    found: dict[int, npt.NDArray[np.float32]] = {}
    for tensor in reader.tensors:
        match = _DIRECTION.match(tensor.name)
        if match is None or int(match.group(1)) == 0:
            raise ControlVectorError(
                f"{where}: tensor {tensor.name!r} is not a direction.<layer> tensor with a "
                "layer from 1 (llama.cpp's control vector format)", path=where)
        if tensor.tensor_type != GGMLQuantizationType.F32 or len(tensor.shape) != 1:
            raise ControlVectorError(f"{where}: {tensor.name} must be a 1-D F32 tensor",
                                     path=where)
        layer = int(match.group(1))
        values = np.asarray(tensor.data, dtype=np.float32).reshape(-1)
        if found and values.size != next(iter(found.values())).size:
            raise ControlVectorError(f"{where}: {tensor.name} has {values.size} values, the "
                                     "other directions a different number", path=where)
        found[layer] = found[layer] + values if layer in found else values.copy()
    if not found:
        raise ControlVectorError(f"{where} holds no direction tensors", path=where)
    return found


def _by_layer(source: Any) -> dict[int, npt.NDArray[np.float32]]:
    if isinstance(source, (str, os.PathLike)):
        return read_control_vector(source)
    if isinstance(source, Mapping):
        result = {}
        for layer, vector in source.items():
            if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
                raise ControlVectorError(f"control vector layers are integers, got {layer!r}")
            result[int(layer)] = np.asarray(vector, dtype=np.float32).reshape(-1)
        return result
    try:
        rows = np.asarray(source, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ControlVectorError(f"a control vector is a file, a 2-D array or a "
                                 f"{{layer: vector}} mapping: {exc}") from None
    if rows.ndim != 2:
        raise ControlVectorError(f"a control vector array has one row per layer from layer 1 "
                                 f"(2-D, n_layer - 1 by n_embd); got shape {rows.shape}")
    return {i + 1: rows[i] for i in range(rows.shape[0])}


def control_vector_rows(model: Model, source: Any, strength: float,
                        layers: Iterable[int] | None) -> tuple[npt.NDArray[np.float32], int, int]:
    """The rows llama.cpp takes (layer 1 first, ``n_layer - 1`` of them), scaled by
    ``strength``, with the layers not chosen zeroed; and the first and last layer chosen."""
    info = model.info
    n_embd, n_layer = info.n_embd, info.n_layer
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) \
            or not np.isfinite(strength):
        raise ControlVectorError(f"strength must be a finite number, got {strength!r}")
    directions = _by_layer(source)
    if not directions:
        raise ControlVectorError("the control vector has no layers")
    where = f" ({source})" if isinstance(source, (str, os.PathLike)) else ""
    for layer, vector in directions.items():
        if not 1 <= layer < n_layer:
            raise ControlVectorError(f"the control vector{where} has a direction for layer "
                                     f"{layer}, but this model takes layers 1..{n_layer - 1}")
        if vector.size != n_embd:
            raise ControlVectorError(f"the control vector{where} has {vector.size} values per "
                                     f"layer, but this model's n_embd is {n_embd}")
        if not np.isfinite(vector).all():
            raise ControlVectorError(f"the control vector{where} has NaN or infinite values")
    chosen = sorted(set(directions) if layers is None else {_layer(v) for v in layers})
    if not chosen:
        raise ControlVectorError("layers selects no layer")
    for layer in chosen:
        if not 1 <= layer < n_layer:
            raise ControlVectorError(f"layers: {layer} is not a layer a control vector "
                                     f"applies to (1..{n_layer - 1})")
    rows = np.zeros((n_layer - 1, n_embd), dtype=np.float32)
    for layer in chosen:
        if layer in directions:
            rows[layer - 1] = directions[layer] * np.float32(strength)
    return rows, chosen[0], chosen[-1]


def _layer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ControlVectorError(f"layers are integers, got {value!r}")
    return int(value)


class ControlVectorMixin(ContextCore):
    """``Context.apply_control_vector`` and ``clear_control_vector`` (built on
    ``ContextCore``)."""

    def apply_control_vector(self, source: ControlVectorSource, strength: float = 1.0, *,
                             layers: Iterable[int] | None = None) -> None:
        """Add a control vector to the hidden state after each layer it covers.

        ``source`` is a control vector GGUF file (llama.cpp's format: ``direction.<layer>``
        tensors), a 2-D array with one row per layer from layer 1 (``n_layer - 1`` rows at
        most, ``n_embd`` columns) or a ``{layer: vector}`` mapping. ``strength`` scales it;
        ``layers`` (e.g. ``range(10, 20)``) limits it to those layers. It replaces any
        vector applied before and empties the KV cache (cached keys and values were
        computed without it). A vector that does not fit the model raises
        ``ControlVectorError``.
        """
        rows, first, last = control_vector_rows(self.model, source, strength, layers)
        with self._lock:
            set_control_vector(self._handle, rows, first, last)

    def clear_control_vector(self) -> None:
        """Stop applying the control vector (and empty the KV cache)."""
        with self._lock:
            set_control_vector(self._handle, None)
