"""Quantization in the handle layer: ``llama_model_quantize`` and ggml's type traits.

llama.cpp's quantizer turns most bad inputs into a thrown exception (reported as status 1),
but a few reach ``GGML_ASSERT`` and abort the process: a target type ggml cannot produce,
rows that do not divide into the type's blocks where no fallback applies, an imatrix-only
type without an imatrix. ``llamakit._quantize`` rules those out before calling here; this
module checks what it can see (types, names, sizes) once more, so a call never aborts.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._errors import QuantizeError
from .lib import NativeLib

__all__ = [
    "GgmlType",
    "QuantizeParams",
    "ftype_description",
    "ftypes",
    "ggml_types",
    "model_quantize",
    "quantization_version",
    "split_path",
]

# The target types ggml_quantize_chunk (ggml/src/ggml.c) has a case for: any other type
# reaches its `assert(false)` and breaks the file. tests/quantize checks this against ggml.c.
QUANTIZE_CHUNK_TYPES = frozenset({
    "f32", "f16", "bf16", "q1_0", "q2_0", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "mxfp4",
    "nvfp4", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "tq1_0", "tq2_0", "iq2_xxs", "iq2_xs",
    "iq3_xxs", "iq3_s", "iq2_s", "iq1_s", "iq1_m", "iq4_nl", "iq4_xs",
})
_FAILED = re.compile(r"failed to quantize: (.*)")
_KV_KEY_MAX = 127  # llama_model_kv_override: char key[128], char val_str[128]
_KV_TAGS = {int: "LLAMA_KV_OVERRIDE_TYPE_INT", float: "LLAMA_KV_OVERRIDE_TYPE_FLOAT",
            bool: "LLAMA_KV_OVERRIDE_TYPE_BOOL", str: "LLAMA_KV_OVERRIDE_TYPE_STR"}


@dataclass(frozen=True)
class GgmlType:
    """One ggml tensor type, as ggml's type traits describe it."""

    id: int
    name: str
    blck_size: int
    type_size: int
    is_quantized: bool
    requires_imatrix: bool
    """``ggml_quantize_requires_imatrix``: ggml asserts when asked for it without one."""
    can_dequantize: bool
    """llama.cpp can read it back to F32 (a source the quantizer accepts)."""
    can_quantize: bool
    """ggml can produce it (a target the quantizer accepts)."""

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.type_size / self.blck_size

    def row_size(self, n: int) -> int:
        """Bytes of a row of ``n`` elements (``ggml_row_size``); ``n`` divides into blocks."""
        return self.type_size * n // self.blck_size


_type_cache: dict[int, dict[str, GgmlType]] = {}


def ggml_types(native: NativeLib) -> dict[str, GgmlType]:
    """Every live ggml type of this variant by name (removed ids have no block size)."""
    cached = _type_cache.get(id(native))
    if cached is not None:
        return cached
    lib, ffi = native.lib, native.ffi
    found: dict[str, GgmlType] = {}
    for type_id in range(lib.GGML_TYPE_COUNT):
        traits = lib.ggml_get_type_traits(type_id)
        if traits.blck_size <= 0:
            continue
        name = ffi.string(traits.type_name).decode()
        quantized = bool(traits.is_quantized)
        found[name] = GgmlType(
            id=type_id, name=name, blck_size=int(traits.blck_size),
            type_size=int(traits.type_size), is_quantized=quantized,
            requires_imatrix=bool(lib.ggml_quantize_requires_imatrix(type_id)),
            can_dequantize=name in ("f32", "f16", "bf16")
            or (quantized and traits.to_float != ffi.NULL),
            can_quantize=name in QUANTIZE_CHUNK_TYPES)
    _type_cache[id(native)] = found
    return found


def ftypes(native: NativeLib) -> dict[str, int]:
    """llama.cpp's file types by their enum name less ``LLAMA_FTYPE_`` (``MOSTLY_Q4_K_M``)."""
    lib = native.lib
    return {name[len("LLAMA_FTYPE_"):]: int(getattr(lib, name)) for name in dir(lib)
            if name.startswith("LLAMA_FTYPE_") and name != "LLAMA_FTYPE_GUESSED"}


def ftype_description(native: NativeLib, ftype: int) -> str:
    """``llama_ftype_name``: ``"Q4_K - Medium"``."""
    return str(native.ffi.string(native.lib.llama_ftype_name(ftype)).decode())


def quantization_version(native: NativeLib) -> int:
    """``GGML_QNT_VERSION``, which the quantizer writes to ``general.quantization_version``."""
    return int(native.lib.GGML_QNT_VERSION)


def split_path(native: NativeLib, prefix: str, split_no: int, split_count: int) -> str:
    """``llama_split_path``: the name of shard ``split_no`` (0-based) of ``prefix``."""
    raw = os.fsencode(prefix)
    size = len(raw) + 64
    buf = native.ffi.new("char[]", size)
    n = native.lib.llama_split_path(buf, size, raw, split_no, split_count)
    return os.fsdecode(bytes(native.ffi.buffer(buf, n)))


KvValue = int | float | bool | str


@dataclass(frozen=True)
class QuantizeParams:
    """``llama_model_quantize_params`` in Python terms (ggml types by name)."""

    ftype: int
    nthread: int
    output_tensor_type: str | None = None
    token_embedding_type: str | None = None
    allow_requantize: bool = False
    quantize_output_tensor: bool = True
    only_copy: bool = False
    pure: bool = False
    keep_split: bool = False
    dry_run: bool = False
    imatrix: Mapping[str, np.ndarray] | None = None
    kv_overrides: Sequence[tuple[str, KvValue]] = ()
    tensor_types: Sequence[tuple[str, str]] = field(default_factory=tuple)


def _target_type(types: Mapping[str, GgmlType], name: str, what: str) -> int:
    found = types.get(name)
    if found is None or not found.can_quantize:
        raise QuantizeError(f"{what}: ggml cannot quantize to {name!r}")
    return found.id


def _kv_overrides(native: NativeLib, items: Sequence[tuple[str, KvValue]],
                  keep: list[Any]) -> Any:
    ffi, lib = native.ffi, native.lib
    array = ffi.new("struct llama_model_kv_override[]", len(items) + 1)
    keep.append(array)
    for slot, (key, value) in zip(array, items, strict=False):
        raw_key = key.encode()
        if not raw_key or len(raw_key) > _KV_KEY_MAX:
            raise QuantizeError(f"metadata key {key!r} must have 1 to {_KV_KEY_MAX} bytes")
        slot.key = raw_key
        slot.tag = getattr(lib, _KV_TAGS[type(value)])
        if isinstance(value, bool):
            slot.val_bool = value
        elif isinstance(value, int):
            slot.val_i64 = value
        elif isinstance(value, float):
            slot.val_f64 = value
        else:
            # llama-quantize truncates long values the same way (val_str is 128 bytes).
            slot.val_str = value.encode()[:_KV_KEY_MAX].decode(errors="ignore").encode()
    return array  # the zeroed last slot (key[0] == 0) ends the list


def _imatrix(native: NativeLib, data: Mapping[str, np.ndarray], keep: list[Any]) -> Any:
    ffi = native.ffi
    array = ffi.new("struct llama_model_imatrix_data[]", len(data) + 1)
    keep.append(array)
    for slot, (name, values) in zip(array, data.items(), strict=False):
        floats = np.ascontiguousarray(values, dtype=np.float32)
        if floats.ndim != 1 or not floats.size or not np.isfinite(floats).all():
            raise QuantizeError(f"imatrix entry {name!r} must be a non-empty 1-D array of "
                                "finite numbers")
        c_name = ffi.new("char[]", name.encode())
        buffer = ffi.from_buffer("float[]", floats)
        keep.extend((c_name, floats, buffer))
        slot.name, slot.data, slot.size = c_name, buffer, floats.size
    return array  # the NULL name of the last slot ends the list


def model_quantize(native: NativeLib, src: str, dst: str, params: QuantizeParams) -> None:
    """Run ``llama_model_quantize(src, dst)``; a non-zero status is ``QuantizeError``.

    The GIL is released while llama.cpp works; its log lines still reach the listeners of
    ``native`` from this thread.
    """
    lib, ffi = native.lib, native.ffi
    types = ggml_types(native)
    if params.ftype not in ftypes(native).values():
        raise QuantizeError(f"unknown llama_ftype {params.ftype}")
    if params.nthread < 1:
        raise QuantizeError(f"nthread must be >= 1, got {params.nthread}")
    keep: list[Any] = []  # C memory the params point into, alive until the call returns
    c_params = ffi.new("llama_model_quantize_params *", lib.llama_model_quantize_default_params())
    p = c_params[0]
    p.nthread = params.nthread
    p.ftype = params.ftype
    if params.output_tensor_type is not None:
        p.output_tensor_type = _target_type(types, params.output_tensor_type,
                                            "output_tensor_type")
    if params.token_embedding_type is not None:
        p.token_embedding_type = _target_type(types, params.token_embedding_type,
                                              "token_embedding_type")
    p.allow_requantize = params.allow_requantize
    p.quantize_output_tensor = params.quantize_output_tensor
    p.only_copy = params.only_copy
    p.pure = params.pure
    p.keep_split = params.keep_split
    p.dry_run = params.dry_run
    if params.imatrix:
        p.imatrix = _imatrix(native, params.imatrix, keep)
    if params.kv_overrides:
        p.kv_overrides = _kv_overrides(native, params.kv_overrides, keep)
    if params.tensor_types:
        overrides = ffi.new("struct llama_model_tensor_override[]", len(params.tensor_types) + 1)
        keep.append(overrides)
        for slot, (pattern, type_name) in zip(overrides, params.tensor_types, strict=False):
            c_pattern = ffi.new("char[]", pattern.encode())
            keep.append(c_pattern)
            slot.pattern = c_pattern
            slot.type = _target_type(types, type_name, f"tensor_types[{pattern!r}]")
        overrides[len(params.tensor_types)].type = lib.GGML_TYPE_COUNT
        p.tt_overrides = overrides
    reasons: list[str] = []
    caller = threading.get_ident()

    def listen(level: int, line: str) -> None:
        if level >= logging.ERROR and threading.get_ident() == caller:
            match = _FAILED.search(line)
            if match:
                reasons.append(match.group(1).strip())

    with native.log_listener(listen):
        status = lib.llama_model_quantize(os.fsencode(src), os.fsencode(dst), c_params)
    if status != 0:
        reason = reasons[-1] if reasons else "see the 'llamakit.native' log"
        if "requantiz" in reason:
            reason += ("; the source is already quantized: pass allow_requantize=True "
                       "(llamakit quantize --allow-requantize) to quantize it again, at a "
                       "loss of quality against quantizing the F16/F32 original")
        raise QuantizeError(f"llama.cpp failed to quantize {src}: {reason} (status {status})",
                            path=src, status=int(status))
