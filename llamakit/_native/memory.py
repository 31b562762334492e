"""State snapshots and KV-cache (memory) operations of a ``ContextHandle``.

llama.cpp aborts on a sequence id outside ``[0, n_seq_max)`` in its memory calls, and a
failed ``llama_state_set_data`` can leave the context half-restored; both are handled
here: ids are checked first, and a failed restore puts the previous state back.
"""

from __future__ import annotations

from .._errors import ConfigError, StateError
from .context import ContextHandle
from .handle import pinned

__all__ = ["check_seq", "get_state", "kv_add", "kv_can_shift", "kv_clear", "kv_copy", "kv_div",
           "kv_keep", "kv_pos_max", "kv_pos_min", "kv_remove", "set_state"]


def check_seq(ctx: ContextHandle, seq_id: int, *, allow_all: bool = False) -> int:
    low = -1 if allow_all else 0
    if isinstance(seq_id, bool) or not isinstance(seq_id, int) or \
            not low <= seq_id < ctx.n_seq_max:
        raise ConfigError(f"seq_id must be in {low}..{ctx.n_seq_max - 1} for this context "
                          f"(n_seq_max={ctx.n_seq_max}), got {seq_id!r}", key="seq_id")
    return seq_id


def _check_pos(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**31) <= value < 2**31:
        raise ConfigError(f"{name} must be an int32 position (negative: open end), "
                          f"got {value!r}", key=name)
    return value


@pinned
def get_state(ctx: ContextHandle, seq_id: int | None = None) -> bytes:
    """llama.cpp's state of the whole context, or of one sequence."""
    lib, ffi, ptr = ctx.lib, ctx.ffi, ctx.ptr
    if seq_id is None:
        size = int(lib.llama_state_get_size(ptr))
        buf = ffi.new("uint8_t[]", size)
        written = int(lib.llama_state_get_data(ptr, buf, size))
    else:
        check_seq(ctx, seq_id)
        size = int(lib.llama_state_seq_get_size(ptr, seq_id))
        buf = ffi.new("uint8_t[]", size)
        written = int(lib.llama_state_seq_get_data(ptr, buf, size, seq_id))
    ctx.check_devices()  # state read from a lost device would be garbage
    if written != size:
        raise StateError(f"llama.cpp wrote {written} of {size} state bytes")
    return bytes(ffi.buffer(buf, size))


@pinned
def set_state(ctx: ContextHandle, data: bytes, seq_id: int | None = None) -> None:
    """Restore a state from ``get_state``; on failure the previous state is put back."""
    lib, ffi, ptr = ctx.lib, ctx.ffi, ctx.ptr
    if seq_id is not None:
        check_seq(ctx, seq_id)
    previous = get_state(ctx, seq_id)
    with ctx.native.capture_errors() as errors:
        if seq_id is None:
            read = int(lib.llama_state_set_data(ptr, ffi.from_buffer(data), len(data)))
        else:
            read = int(lib.llama_state_seq_set_data(ptr, ffi.from_buffer(data), len(data),
                                                    seq_id))
    ctx.check_devices()
    if read == 0 or read != len(data):
        if seq_id is None:
            lib.llama_state_set_data(ptr, ffi.from_buffer(previous), len(previous))
        else:
            lib.llama_memory_seq_rm(lib.llama_get_memory(ptr), seq_id, -1, -1)
            if previous:
                lib.llama_state_seq_set_data(ptr, ffi.from_buffer(previous), len(previous),
                                             seq_id)
        reason = "; ".join(errors) or f"it consumed {read} of {len(data)} bytes"
        raise StateError(f"llama.cpp could not restore the state: {reason}")


@pinned
def kv_clear(ctx: ContextHandle) -> None:
    ctx.clear_memory()


@pinned
def kv_remove(ctx: ContextHandle, seq_id: int, p0: int, p1: int) -> bool:
    check_seq(ctx, seq_id, allow_all=True)
    return bool(ctx.lib.llama_memory_seq_rm(ctx.lib.llama_get_memory(ctx.ptr), seq_id,
                                            _check_pos("p0", p0), _check_pos("p1", p1)))


@pinned
def kv_copy(ctx: ContextHandle, src: int, dst: int, p0: int, p1: int) -> None:
    check_seq(ctx, src)
    check_seq(ctx, dst)
    p0, p1 = _check_pos("p0", p0), _check_pos("p1", p1)
    if src != dst and not ctx.kv_unified and (p0 > 0 or p1 >= 0):
        # Separate streams copy whole buffers: llama_kv_cache::seq_cp asserts
        # GGML_ASSERT(is_full && "seq_cp() is only supported for full KV buffers").
        raise ConfigError(f"copying part of a sequence (p0={p0}, p1={p1}) needs a context "
                          "made with kv_unified=True; without it copy the whole sequence "
                          "(p0=-1, p1=-1)", key="seq_cp")
    ctx.lib.llama_memory_seq_cp(ctx.lib.llama_get_memory(ctx.ptr), src, dst, p0, p1)


@pinned
def kv_keep(ctx: ContextHandle, seq_id: int) -> None:
    check_seq(ctx, seq_id)
    ctx.lib.llama_memory_seq_keep(ctx.lib.llama_get_memory(ctx.ptr), seq_id)


@pinned
def kv_can_shift(ctx: ContextHandle) -> bool:
    return bool(ctx.lib.llama_memory_can_shift(ctx.lib.llama_get_memory(ctx.ptr)))


@pinned
def kv_add(ctx: ContextHandle, seq_id: int, p0: int, p1: int, delta: int) -> None:
    check_seq(ctx, seq_id)
    if not kv_can_shift(ctx):
        raise ConfigError("this model's memory cannot shift positions", key="seq_add")
    ctx.lib.llama_memory_seq_add(ctx.lib.llama_get_memory(ctx.ptr), seq_id,
                                 _check_pos("p0", p0), _check_pos("p1", p1),
                                 _check_pos("delta", delta))


@pinned
def kv_div(ctx: ContextHandle, seq_id: int, p0: int, p1: int, d: int) -> None:
    check_seq(ctx, seq_id)
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ConfigError(f"d must be an integer >= 1, got {d!r}", key="d")
    if not kv_can_shift(ctx):
        raise ConfigError("this model's memory cannot shift positions", key="seq_div")
    ctx.lib.llama_memory_seq_div(ctx.lib.llama_get_memory(ctx.ptr), seq_id,
                                 _check_pos("p0", p0), _check_pos("p1", p1), d)


@pinned
def kv_pos_min(ctx: ContextHandle, seq_id: int) -> int:
    check_seq(ctx, seq_id)
    return int(ctx.lib.llama_memory_seq_pos_min(ctx.lib.llama_get_memory(ctx.ptr), seq_id))


@pinned
def kv_pos_max(ctx: ContextHandle, seq_id: int) -> int:
    check_seq(ctx, seq_id)
    return int(ctx.lib.llama_memory_seq_pos_max(ctx.lib.llama_get_memory(ctx.ptr), seq_id))
