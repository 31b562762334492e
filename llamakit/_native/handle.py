"""The owning-handle base class shared by every C object llamakit holds.

Each handle frees its C object exactly once: on ``close()``, or through a
``weakref.finalize`` safety net. A handle that depends on another (a context on its
model) keeps it alive; closing the parent closes its dependents first, so C never sees
a dangling pointer.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, ClassVar

from .._errors import ClosedError
from .lib import NativeLib

__all__ = ["Handle"]


class Handle:
    """Owns one C pointer; ``ptr`` raises ``ClosedError`` once closed."""

    kind: ClassVar[str] = "object"

    def __init__(self, native: NativeLib, ptr: Any, free: Callable[[Any], None]) -> None:
        self.native = native
        self.ffi = native.ffi
        self.lib = native.lib
        self._ptr: Any = ptr
        self._dependents: weakref.WeakSet[Handle] = weakref.WeakSet()
        self._finalizer = weakref.finalize(self, free, ptr)

    @property
    def ptr(self) -> Any:
        if self._ptr is None:
            raise ClosedError(f"this {self.kind} is closed")
        return self._ptr

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def add_dependent(self, handle: Handle) -> None:
        self._dependents.add(handle)

    def close(self) -> None:
        if self._ptr is None:
            return
        for dependent in list(self._dependents):
            dependent.close()
        self._ptr = None
        self._finalizer()
