"""The owning-handle base class shared by every C object llamakit holds.

Each handle frees its C object exactly once: on ``close()``, or through a
``weakref.finalize`` safety net. A handle that depends on another (a context on its
model) keeps it alive; closing the parent closes its dependents first, so C never sees
a dangling pointer. The safety net keeps that order too: when the garbage collector
finds a model and its context in one unreachable cycle it may finalize them in any
order, so each C object lives in a ``_Resource`` that waits for its dependents'
resources to be freed before freeing its own.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, ClassVar

from .._errors import ClosedError
from .lib import NativeLib

__all__ = ["Handle"]


class _Resource:
    """A C object and its free function: freed once its handle is gone (closed or
    collected) and every dependent resource has been freed."""

    __slots__ = ("free", "handle_gone", "parent", "ptr", "users")

    def __init__(self, ptr: Any, free: Callable[[Any], None]) -> None:
        self.ptr: Any = ptr
        self.free = free
        self.parent: _Resource | None = None
        self.users = 0  # dependent resources not yet freed
        self.handle_gone = False

    def attach(self, parent: _Resource) -> None:
        if self.parent is None and self.ptr is not None:
            self.parent = parent
            parent.users += 1

    def release(self) -> None:
        """The handle is closed or collected: free now, or when the last user is freed."""
        self.handle_gone = True
        self._free_if_unused()

    def _free_if_unused(self) -> None:
        if not self.handle_gone or self.users or self.ptr is None:
            return
        ptr, self.ptr = self.ptr, None
        try:
            self.free(ptr)
        finally:
            parent, self.parent = self.parent, None
            if parent is not None:
                parent.users -= 1
                parent._free_if_unused()


class Handle:
    """Owns one C pointer; ``ptr`` raises ``ClosedError`` once closed."""

    kind: ClassVar[str] = "object"

    def __init__(self, native: NativeLib, ptr: Any, free: Callable[[Any], None]) -> None:
        self.native = native
        self.ffi = native.ffi
        self.lib = native.lib
        self._ptr: Any = ptr
        self._dependents: weakref.WeakSet[Handle] = weakref.WeakSet()
        self._resource = _Resource(ptr, free)
        self._finalizer = weakref.finalize(self, self._resource.release)

    @property
    def ptr(self) -> Any:
        if self._ptr is None:
            raise ClosedError(f"this {self.kind} is closed")
        return self._ptr

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def check_open(self) -> None:
        """Raise ``ClosedError`` once closed (before a call that reads no pointer)."""
        if self._ptr is None:
            raise ClosedError(f"this {self.kind} is closed")

    def add_dependent(self, handle: Handle) -> None:
        self._dependents.add(handle)
        handle._resource.attach(self._resource)

    def close(self) -> None:
        if self._ptr is None:
            return
        for dependent in list(self._dependents):
            dependent.close()
        self._ptr = None
        self._finalizer()
