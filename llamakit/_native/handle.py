"""The owning-handle base class shared by every C object llamakit holds.

Each handle frees its C object exactly once: on ``close()``, or through a
``weakref.finalize`` safety net. A handle that depends on another (a context on its
model) keeps it alive; closing the parent closes its dependents first, so C never sees
a dangling pointer. The safety net keeps that order too: when the garbage collector
finds a model and its context in one unreachable cycle it may finalize them in any
order, so each C object lives in a ``_Resource`` that waits for its dependents'
resources to be freed before freeing its own.

Threads: every function of the handle layer that passes a handle's pointer to C runs
under ``@pinned`` (or ``with handle.pinned()``), which counts the call on the handle's
resource for its whole duration. ``close()`` from another thread marks the handle closed
at once (later calls raise ``ClosedError``) but the C object is freed only when the last
call in flight returns, so a close never frees memory that C is still using. Handles
that C must not enter from two threads at once (contexts: ``exclusive``) also hold a
per-handle lock for each call, and their ``close()`` first asks the call in flight to
stop (``_interrupt``) and then waits for it.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from .._errors import ClosedError
from .lib import NativeLib

__all__ = ["Handle", "pinned"]

# Guards every _Resource's counters; held for a few operations, never across a C call.
_TREE = threading.Lock()

F = TypeVar("F", bound=Callable[..., Any])


class _Resource:
    """A C object and its free function: freed once its handle is gone (closed or
    collected), no call is using it and every dependent resource has been freed."""

    __slots__ = ("calls", "free", "handle_gone", "parent", "ptr", "users")

    def __init__(self, ptr: Any, free: Callable[[Any], None]) -> None:
        self.ptr: Any = ptr
        self.free = free
        self.parent: _Resource | None = None
        self.users = 0  # dependent resources not yet freed
        self.calls = 0  # native calls in flight that use ptr
        self.handle_gone = False

    def attach(self, parent: _Resource) -> None:
        with _TREE:
            if self.parent is None and self.ptr is not None:
                self.parent = parent
                parent.users += 1

    def release(self) -> None:
        """The handle is closed or collected: free now, or when the last user is freed."""
        with _TREE:
            self.handle_gone = True
            due = self._due()
        _run(due)

    def _due(self) -> list[tuple[Callable[[Any], None], Any]]:
        """Under _TREE: the frees that are now due, this one first, then its parents'."""
        due: list[tuple[Callable[[Any], None], Any]] = []
        resource: _Resource | None = self
        while resource is not None:
            if not resource.handle_gone or resource.users or resource.calls \
                    or resource.ptr is None:
                break
            due.append((resource.free, resource.ptr))
            resource.ptr = None
            parent, resource.parent = resource.parent, None
            if parent is not None:
                parent.users -= 1
            resource = parent
        return due


def _run(due: list[tuple[Callable[[Any], None], Any]]) -> None:
    # Outside _TREE: freeing a model can take a while and must not stall other threads.
    error: BaseException | None = None
    for free, ptr in due:
        try:
            free(ptr)
        except BaseException as exc:  # free the parents regardless, then report
            error = error or exc
    if error is not None:
        raise error


class _Pin:
    """``with handle.pinned():`` the handle's C object stays allocated (and, for an
    exclusive handle, no other thread enters C with it) until the block ends."""

    __slots__ = ("handle",)

    def __init__(self, handle: Handle) -> None:
        self.handle = handle

    def __enter__(self) -> Any:
        return self.handle._begin_call()

    def __exit__(self, *exc: object) -> None:
        self.handle._end_call()


class Handle:
    """Owns one C pointer; ``ptr`` raises ``ClosedError`` once closed."""

    kind: ClassVar[str] = "object"
    #: C must not run two calls on this object at once (a llama_context is not thread-safe).
    exclusive: ClassVar[bool] = False

    def __init__(self, native: NativeLib, ptr: Any, free: Callable[[Any], None]) -> None:
        self.native = native
        self.ffi = native.ffi
        self.lib = native.lib
        self._ptr: Any = ptr
        self._dependents: weakref.WeakSet[Handle] = weakref.WeakSet()
        self._resource = _Resource(ptr, free)
        self._call_lock = threading.RLock()
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

    def pinned(self) -> _Pin:
        """Keep the C object allocated for a ``with`` block (``ClosedError`` if closed)."""
        return _Pin(self)

    def _begin_call(self) -> Any:
        # The hot path of every native call (a generated token pins twice): one frame.
        if self.exclusive:
            # The call lock orders this call after or before every other call and close()
            # (which marks the handle under it): the count needs no _TREE here (see "Batch
            # inference and threads" in docs/architecture.md).
            self._call_lock.acquire()
            ptr = self._ptr
            if ptr is None:
                self._call_lock.release()
                raise ClosedError(f"this {self.kind} is closed")
            self._resource.calls += 1
            return ptr
        with _TREE:
            ptr = self._ptr
            if ptr is not None:
                self._resource.calls += 1
        if ptr is None:
            raise ClosedError(f"this {self.kind} is closed")
        return ptr

    def _end_call(self) -> None:
        resource = self._resource
        if self.exclusive:
            try:
                resource.calls -= 1
                if resource.handle_gone:  # closed by this thread during the call
                    with _TREE:
                        gone = resource._due()
                    _run(gone)
            finally:
                self._call_lock.release()
            return
        with _TREE:
            resource.calls -= 1
            due = resource._due() if resource.handle_gone else None
        if due:
            _run(due)

    def add_dependent(self, handle: Handle) -> None:
        with self.pinned():  # a parent closing meanwhile closes this one too
            self._dependents.add(handle)
            handle._resource.attach(self._resource)

    def _interrupt(self) -> None:
        """Ask a call in flight to stop soon (contexts set their abort flag)."""

    def close(self) -> None:
        if self._ptr is None:
            return
        for dependent in list(self._dependents):
            dependent.close()
        self._interrupt()
        # Taking the call lock waits for another thread's call in flight; the close
        # itself cannot run inside it then. A close made by the thread that is in the
        # call (a callback) only marks the handle: the last call out frees it.
        with self._call_lock if self.exclusive else _NO_LOCK, _TREE:
            if self._ptr is None:
                return
            self._ptr = None
        self._detach()
        self._finalizer()

    def _detach(self) -> None:
        """After the handle is marked closed, before its C object is released: undo
        what other C objects hold of it (an adapter applied to contexts)."""


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()


def pinned(function: F) -> F:
    """Run ``function`` with every handle among its positional arguments pinned (in
    order): the handle layer's functions that pass pointers to C are all wrapped so."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        held: list[Handle] = []
        try:
            for arg in args:
                if isinstance(arg, Handle):
                    arg._begin_call()
                    held.append(arg)
            return function(*args, **kwargs)
        finally:
            for handle in reversed(held):
                handle._end_call()

    return call  # type: ignore[return-value]
