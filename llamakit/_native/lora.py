"""``LoraHandle``: a ``llama_adapter_lora`` loaded for one model.

llama.cpp's model deletes the adapters still registered with it when it is freed, and a
context keeps raw adapter pointers once they are applied; so an adapter is a dependent
of its model (closed first) and detaches itself from every context using it before it is
freed.
"""

from __future__ import annotations

import functools
import os
import weakref
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from .._errors import ClosedError, LoraError
from .handle import Handle, pinned
from .model import ModelHandle, read_string

if TYPE_CHECKING:
    from .context import ContextHandle

__all__ = ["LoraHandle"]


class LoraHandle(Handle):
    """A LoRA adapter; ``users`` are the contexts that currently apply it."""

    kind = "LoRA adapter"

    def __init__(self, model: ModelHandle, ptr: Any, path: str) -> None:
        super().__init__(model.native, ptr, model.lib.llama_adapter_lora_free)
        self.model = model
        self.path = path
        self.users: weakref.WeakSet[ContextHandle] = weakref.WeakSet()
        model.add_dependent(self)

    @classmethod
    @pinned
    def load(cls, model: ModelHandle, path: str) -> LoraHandle:
        if not os.path.isfile(path):
            raise LoraError(f"LoRA adapter file not found: {path}", path=path)
        with open(path, "rb") as handle:
            if handle.read(4) != b"GGUF":
                raise LoraError(f"{path} is not a GGUF LoRA adapter (no GGUF magic); convert "
                                "it with llama.cpp's convert_lora_to_gguf.py", path=path)
        with model.native.capture_errors() as errors:
            ptr = model.lib.llama_adapter_lora_init(model.ptr, os.fsencode(path))
        if ptr == model.ffi.NULL:
            reason = "; ".join(errors) or "see the 'llamakit.native' log"
            raise LoraError(f"llama.cpp refused the adapter {path}: {reason}", path=path)
        return cls(model, ptr, path)

    @pinned
    def metadata(self) -> dict[str, str]:
        lib, ptr = self.lib, self.ptr
        result: dict[str, str] = {}
        for i in range(lib.llama_adapter_meta_count(ptr)):
            key = read_string(self.ffi, functools.partial(lib.llama_adapter_meta_key_by_index,
                                                          ptr, i))
            value = read_string(self.ffi, functools.partial(
                lib.llama_adapter_meta_val_str_by_index, ptr, i))
            if key is not None and value is not None:
                result[key] = value
        return result

    def _detach(self) -> None:
        # Marked closed first (see Handle.close), so no context can apply it anew; a
        # context closed meanwhile no longer runs calls that could read it. A generation
        # in flight on a user stops with AbortedError rather than going on with the
        # cache cleared under it.
        for context in list(self.users):
            if not context.closed:
                context.set_abort(True)
                with suppress(ClosedError):
                    context.drop_lora(self)
