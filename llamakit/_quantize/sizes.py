"""The size of the file(s) llama.cpp's quantizer writes, computed from shapes and types.

The quantizer (``llama_model_quantize_impl``) writes a GGUF whose metadata is the source's
first file's key/value pairs without the ``split.*`` keys, with ``general.file_type`` and
``general.quantization_version`` set (u32) and the overrides added; then each tensor's data
padded to 32 bytes (``GGUF_DEFAULT_ALIGNMENT``), in the same order as their infos. With
``keep_split`` each shard gets the tensors of its source shard, and shards after the first
only the ``split.*`` keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .._native.quantize import GgmlType
from .gguf_header import GgufHeader

__all__ = ["predict_sizes", "tensor_bytes"]

_ALIGN = 32
_SPLIT_KEYS = ("split.no", "split.count", "split.tensors.count")
_U16, _I32, _U32, _F32, _BOOL = 2, 5, 4, 6, 7
_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
KvOverride = tuple[str, int | float | bool | str]


def _pad(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def tensor_bytes(shape: Sequence[int], type_: GgmlType) -> int:
    """``ggml_nbytes`` of a contiguous tensor of ``shape`` (ggml order) and ``type_``."""
    return math.prod(shape[1:]) * type_.row_size(shape[0])


def _kv_bytes(key: str, value_size: int) -> int:
    return 8 + len(key.encode()) + 4 + value_size


def _override_value_size(value: int | float | bool | str) -> int:
    if isinstance(value, bool):
        return _SCALAR_BYTES[_BOOL]
    if isinstance(value, str):
        # llama_model_kv_override keeps at most 127 bytes
        return 8 + len(value.encode()[:127].decode(errors="ignore").encode())
    return _SCALAR_BYTES[_U32 if isinstance(value, int) else _F32]


def _n_dims(shape: Sequence[int]) -> int:
    n = len(shape)
    while n > 1 and shape[n - 1] == 1:
        n -= 1
    return n


def predict_sizes(headers: Sequence[GgufHeader], targets: Mapping[str, GgmlType],
                  overrides: Sequence[KvOverride], keep_split: bool) -> list[int]:
    """Bytes of each file the quantizer writes: one, or one per shard with ``keep_split``.

    ``targets`` gives every tensor's type in the output.
    """
    kvs: dict[str, int] = {kv.key: kv.value_size for kv in headers[0].kvs
                           if kv.key not in _SPLIT_KEYS}
    kvs["general.quantization_version"] = _SCALAR_BYTES[_U32]
    kvs["general.file_type"] = _SCALAR_BYTES[_U32]
    for key, value in overrides:
        kvs[key] = _override_value_size(value)
    shards = [list(h.tensors) for h in headers]
    if not keep_split:
        shards = [[t for shard in shards for t in shard]]
    else:
        while len(shards) > 1 and not shards[-1]:
            shards.pop()
    sizes = []
    for index, shard in enumerate(shards):
        # only the first shard carries the metadata; the others get the split keys alone
        shard_kvs = dict(kvs) if index == 0 else {}
        if len(shards) > 1:
            shard_kvs.update({"split.no": _SCALAR_BYTES[_U16], "split.count": _SCALAR_BYTES[_U16],
                              "split.tensors.count": _SCALAR_BYTES[_I32]})
        meta = 24 + sum(_kv_bytes(k, n) for k, n in shard_kvs.items())
        meta += sum(8 + len(t.name.encode()) + 4 + 8 * _n_dims(t.shape) + 4 + 8 for t in shard)
        data = sum(_pad(tensor_bytes(t.shape, targets[t.name])) for t in shard)
        sizes.append(_pad(meta) + data)
    return sizes

