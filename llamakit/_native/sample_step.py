"""``StepSampler``: ``sample_many`` for a batch step, with what it allocates kept between steps.

A batch step of 64 sequences runs on the critical path between one decode's end and the
next one's start (on a GPU nothing overlaps it), so this does per step only what the
step's sequences need: the chains are pinned in one ``_TREE`` turn (instead of a
``_begin_call``/``_end_call`` pair each), the cffi arrays and the chain pointer array are
reused while the same chains step, and tokens and end-of-generation flags come back as two
lists; the pieces are read afterwards (``pieces``), when the next decode is running.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._errors import ClosedError, SamplerError
from .handle import _TREE, _run

if TYPE_CHECKING:
    from .context import ContextHandle
    from .sampler import SamplerHandle

__all__ = ["StepSampler"]

# As sample_many: each sequence's piece gets 32 bytes of the shared buffer, at least 256.
_PIECE_CAP = 256


def _begin_calls(handles: Sequence[SamplerHandle]) -> None:
    """``_begin_call`` of every handle (none exclusive) in one ``_TREE`` turn: all or none."""
    with _TREE:
        for handle in handles:
            if handle._ptr is None:
                break
        else:
            for handle in handles:
                handle._resource.calls += 1
            return
    raise ClosedError(f"this {handle.kind} is closed")


def _end_calls(handles: Sequence[SamplerHandle]) -> None:
    """``_end_call`` of every handle ``_begin_calls`` pinned, in one ``_TREE`` turn."""
    due: list[Any] = []
    with _TREE:
        for handle in handles:
            resource = handle._resource
            resource.calls -= 1
            if resource.handle_gone:
                due += resource._due()
    if due:
        _run(due)


class StepSampler:
    """Samples the chains of one context's batch steps (``BatchStepper``), one call a step."""

    def __init__(self, context: ContextHandle) -> None:
        self._context = context
        self._handles: list[SamplerHandle] = []
        self._chains: Any = None
        self._size = 0
        self._idxs: Any = None
        self._promises: Any = None
        self._tokens: Any = None
        self._eog: Any = None
        self._pieces: Any = None
        self._lengths: Any = None
        self._capacity = 0
        self._n = 0
        self._special = False

    def _allocate(self, n: int) -> None:
        ffi = self._context.ffi
        self._size = n
        self._idxs = ffi.new("int32_t[]", n)
        self._promises = ffi.new("int32_t[]", n)
        self._tokens = ffi.new("llama_token[]", n)
        self._eog = ffi.new("bool[]", n)
        self._lengths = ffi.new("int32_t[]", n)
        self._capacity = max(_PIECE_CAP, 32 * n)
        self._pieces = ffi.new("char[]", self._capacity)
        self._handles = []

    def sample(self, handles: list[SamplerHandle], idxs: Sequence[int],
               special: bool = False) -> tuple[list[int], list[bool]]:
        """``sample_many(context, zip(handles, idxs), special, n_threads=None)``'s tokens
        and end-of-generation flags; ``pieces`` then gives its pieces. The same errors."""
        context = self._context
        n = len(handles)
        self._n = 0
        if not n:
            return [], []
        if n > self._size:
            self._allocate(n)
        ffi = context.ffi
        native = context.native
        if handles != self._handles:
            for handle in handles:
                if handle.native is not native:
                    raise SamplerError("every sampler chain must belong to the context's "
                                       "backend")
            self._handles = []
        ffi.memmove(self._idxs, array("i", idxs), 4 * n)
        ctx = context._begin_call()
        try:
            _begin_calls(handles)
            try:
                if handles != self._handles:
                    # a handle's pointer does not change while it is open (pinned here)
                    self._chains = ffi.new("struct llama_sampler *[]",
                                           [handle._ptr for handle in handles])
                    # a batch's chains get no stages while they step (their owner, the
                    # batch, adds none), so their top-k promises hold as long as they do
                    ffi.memmove(self._promises,
                                array("i", [handle._promise for handle in handles]), 4 * n)
                    self._handles = list(handles)
                done = context.lib.lk_sampler_sample_many(
                    self._chains, self._idxs, self._promises, n, ctx, special, self._tokens,
                    self._eog, self._pieces, self._capacity, self._lengths, 0)
                if done < n:
                    handles[done]._raise(int(self._tokens[done]))
            finally:
                _end_calls(handles)
        finally:
            context._end_call()
        self._n = n
        self._special = special
        return ffi.unpack(self._tokens, n), ffi.unpack(self._eog, n)

    def pieces(self) -> list[bytes]:
        """The text pieces of the last ``sample``'s tokens (read before the next one)."""
        n = self._n
        if not n:
            return []
        ffi = self._context.ffi
        lengths = ffi.unpack(self._lengths, n)
        if min(lengths) >= 0:
            data = ffi.buffer(self._pieces, sum(lengths))[:]
            out: list[bytes] = []
            offset = 0
            for length in lengths:
                end = offset + length
                out.append(data[offset:end])
                offset = end
            return out
        data = ffi.buffer(self._pieces, self._capacity)[:]
        out = []
        offset = 0
        for i, length in enumerate(lengths):
            if length >= 0:
                out.append(data[offset:offset + length])
                offset += length
            else:  # did not fit the buffer
                out.append(self._handles[i].model.piece(int(self._tokens[i]), self._special))
        return out
