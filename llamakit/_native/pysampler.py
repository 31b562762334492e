"""The bridge that lets a Python object be a stage of a native llama.cpp sampler chain.

The shim (``lk_sampler_init_python``) makes a ``llama_sampler`` whose ``llama_sampler_i``
methods call the cffi callbacks below with a ``new_handle`` of a ``_Stage``. A callback never
lets an exception escape into C: it stores it for the calling thread and returns 0, the shim
then unwinds the chain (no later stage runs, nothing is accepted) and returns
``LK_SAMPLE_PYTHON``, and the handle re-raises the stored exception.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import numpy as np

from .._errors import SamplerError
from .._sampler_protocol import TOKEN_DATA, Candidates, check_sampler
from .lib import NativeLib

__all__ = ["new_python_stage", "take_error"]

_state = threading.local()
# The handles C holds, so they stay alive until llama.cpp frees the stage: address -> handle.
_live: dict[int, Any] = {}
_registered: set[int] = set()
_register_lock = threading.Lock()


class _Stage:
    __slots__ = ("name", "sampler")

    def __init__(self, sampler: Any, name: str) -> None:
        self.sampler = sampler
        self.name = name


def take_error() -> BaseException:
    """The exception a Python stage raised on this thread (cleared once taken)."""
    error: BaseException | None = getattr(_state, "error", None)
    _state.error = None
    if error is None:  # the callback could not run at all
        return SamplerError("a Python sampler stage failed without an exception")
    return error


def _keep(native: NativeLib, stage: _Stage) -> Any:
    handle = native.ffi.new_handle(stage)
    _live[int(native.ffi.cast("uintptr_t", handle))] = handle
    return handle


def _register(native: NativeLib) -> None:
    """Install the callbacks into ``native``'s module (once per loaded variant)."""
    with _register_lock:
        if id(native) in _registered:
            return
        ffi = native.ffi
        if ffi.sizeof("llama_token_data") != TOKEN_DATA.itemsize:
            raise SamplerError("llama_token_data does not have the layout llamakit expects")

        @ffi.def_extern(name="lk_py_sampler_apply")  # type: ignore[untyped-decorator]
        def _apply(handle: Any, cur_p: Any) -> int:
            try:
                stage: _Stage = ffi.from_handle(handle)
                size = int(cur_p.size)
                native_data = np.frombuffer(ffi.buffer(cur_p.data, size * TOKEN_DATA.itemsize),
                                            dtype=TOKEN_DATA)
                # The sampler works on a copy that Python owns: a Candidates object (or a
                # view of its arrays) kept past this call must never reach llama.cpp's
                # buffer, which is gone or reused by then.
                candidates = Candidates(native_data.copy(), selected=int(cur_p.selected),
                                        sorted=bool(cur_p.sorted))
                stage.sampler.apply(candidates)
                n, selected, is_sorted = candidates._result()
                native_data[:n] = candidates._data[:n]
                cur_p.size, cur_p.selected, cur_p.sorted = n, selected, is_sorted
                return 1
            except BaseException as exc:  # C must not see it; re-raised by the handle
                _state.error = exc
                return 0

        @ffi.def_extern(name="lk_py_sampler_accept")  # type: ignore[untyped-decorator]
        def _accept(handle: Any, token: int) -> int:
            try:
                ffi.from_handle(handle).sampler.accept(token)
                return 1
            except BaseException as exc:
                _state.error = exc
                return 0

        @ffi.def_extern(name="lk_py_sampler_reset")  # type: ignore[untyped-decorator]
        def _reset(handle: Any) -> int:
            try:
                ffi.from_handle(handle).sampler.reset()
                return 1
            except BaseException as exc:
                _state.error = exc
                return 0

        @ffi.def_extern(name="lk_py_sampler_clone")  # type: ignore[untyped-decorator]
        def _clone(handle: Any) -> Any:
            try:
                stage: _Stage = ffi.from_handle(handle)
                method = getattr(stage.sampler, "clone", None)
                twin = method() if method is not None else copy.deepcopy(stage.sampler)
                check_sampler(twin)
                return _keep(native, _Stage(twin, stage.name))
            except BaseException as exc:
                _state.error = exc
                return ffi.NULL

        @ffi.def_extern(name="lk_py_sampler_free")  # type: ignore[untyped-decorator]
        def _free(handle: Any) -> None:
            _live.pop(int(ffi.cast("uintptr_t", handle)), None)

        _registered.add(id(native))


def new_python_stage(native: NativeLib, sampler: Any, name: str) -> Any:
    """A ``llama_sampler`` calling ``sampler``; the chain that takes it frees it."""
    check_sampler(sampler)
    _register(native)
    lib = native.lib
    flags = ((lib.LK_PY_HAS_ACCEPT if callable(getattr(sampler, "accept", None)) else 0)
             | (lib.LK_PY_HAS_RESET if callable(getattr(sampler, "reset", None)) else 0))
    handle = _keep(native, _Stage(sampler, name))
    return lib.lk_sampler_init_python(handle, name.encode(), flags)
