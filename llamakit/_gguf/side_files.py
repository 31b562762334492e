"""Validation of the GGUF files that are not models: LoRA adapters and importance matrices.

They go through the same structural walk and hazard checks as models (``check_file``),
then through the keys that llama.cpp reads from them with gguf's *typed* getters
(``gguf_get_val_str``, ``gguf_get_val_f32``, ...): those ``GGML_ASSERT`` the stored type
and abort the process on another one, where the model loader's own getters throw. The
readers of the pinned tree:

- ``llama_adapter_lora_init_impl`` (src/llama-adapter.cpp): ``general.type``,
  ``general.architecture``, ``adapter.type`` as strings, ``adapter.lora.alpha`` as f32.
  Its tensors go into ``ggml_mul_mat``, which has no kernel for integer or f64 tensors
  (the CPU backend reads past its type table: a segfault), so those are refused too.
- ``common_imatrix_load`` (common/imatrix-loader.cpp): ``imatrix.chunk_count`` and
  ``imatrix.chunk_size`` as u32 (llamakit reads imatrix files itself, with the same rule).

llamakit does not load control vectors; a loader for them must add its kind here.
"""

from __future__ import annotations

from typing import Literal

from .._errors import GGUFFormatError
from .ggml_types import GGML_TYPES
from .validate import STRING, TYPE_NAMES, Parsed, check_file

__all__ = ["TYPED_KEYS", "validate_side_file"]

_U32, _F32 = 4, 6
SideFile = Literal["lora", "imatrix"]

#: Keys read with an asserting typed getter, by kind of file: key -> the GGUF type it must have.
TYPED_KEYS: dict[str, dict[str, int]] = {
    "lora": {"general.type": STRING, "general.architecture": STRING, "adapter.type": STRING,
             "adapter.lora.alpha": _F32},
    "imatrix": {"imatrix.chunk_count": _U32, "imatrix.chunk_size": _U32},
}
#: Tensor types ggml_mul_mat cannot multiply: the integer types and f64.
_NO_MATMUL = frozenset(i for i, t in enumerate(GGML_TYPES) if t.name in
                       ("i8", "i16", "i32", "i64", "f64"))


def validate_side_file(path: str, kind: SideFile) -> Parsed:
    """Check a LoRA adapter or an imatrix file; ``GGUFFormatError`` names the field."""
    parsed = check_file(path)
    for key, wanted in TYPED_KEYS[kind].items():
        kv = parsed.kvs.get(key.encode())
        if kv is not None and kv.type != wanted:
            raise GGUFFormatError(
                f"{key} must be a {TYPE_NAMES[wanted]}, not {TYPE_NAMES[kv.type]}; "
                "llama.cpp reads it with a typed getter and would abort the process",
                path=path, field=kv.field, offset=kv.offset)
    if kind == "lora":
        for tensor in parsed.tensors:
            if tensor.type in _NO_MATMUL:
                raise GGUFFormatError(
                    f"tensor {tensor.name!r} has type {GGML_TYPES[tensor.type].name}; adapter "
                    "weights must be float or quantized (llama.cpp cannot multiply it and "
                    "would crash)", path=path, field=f"tensor[{tensor.index}] type",
                    offset=tensor.at)
    return parsed
