"""``Context.kv``: direct control of the KV cache (llama.cpp's "memory")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._native import memory

if TYPE_CHECKING:
    from ._context_core import ContextCore

__all__ = ["KVCache"]


class KVCache:
    """The KV cache of a context. Positions are token positions; a negative ``p0``/``p1``
    means "from the start"/"to the end". Sequence ids run from 0 to ``n_seq_max - 1``.

    Editing sequence 0 by hand makes the context forget which prompt prefix it holds, so
    the next ``generate`` evaluates its prompt in full.
    """

    def __init__(self, context: ContextCore) -> None:
        self._context = context

    def _changed(self, seq_id: int) -> None:
        if seq_id in (0, -1):
            self._context._cache.forget()

    def clear(self) -> None:
        """Remove everything from every sequence."""
        self._context.reset()

    def seq_rm(self, seq_id: int, p0: int = -1, p1: int = -1) -> bool:
        """Remove positions ``[p0, p1)`` of ``seq_id`` (-1: every sequence); False when the
        memory cannot remove a partial range (recurrent models)."""
        with self._context._lock:
            done = memory.kv_remove(self._context._handle, seq_id, p0, p1)
            if done and seq_id in (0, -1):
                self._context._cache.truncate(p0, p1)
            return done

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        """Make positions ``[p0, p1)`` of ``src`` also belong to ``dst``."""
        with self._context._lock:
            memory.kv_copy(self._context._handle, src, dst, p0, p1)
            self._changed(dst)

    def seq_keep(self, seq_id: int) -> None:
        """Remove every sequence but ``seq_id``."""
        with self._context._lock:
            memory.kv_keep(self._context._handle, seq_id)
            if seq_id != 0:
                self._changed(0)

    def seq_add(self, seq_id: int, p0: int, p1: int, delta: int) -> None:
        """Shift positions ``[p0, p1)`` of ``seq_id`` by ``delta`` (RoPE models)."""
        with self._context._lock:
            memory.kv_add(self._context._handle, seq_id, p0, p1, delta)
            self._changed(seq_id)

    def seq_div(self, seq_id: int, p0: int, p1: int, d: int) -> None:
        """Divide positions ``[p0, p1)`` of ``seq_id`` by ``d`` (self-extend)."""
        with self._context._lock:
            memory.kv_div(self._context._handle, seq_id, p0, p1, d)
            self._changed(seq_id)

    def seq_pos_min(self, seq_id: int = 0) -> int:
        """Smallest position held for ``seq_id`` (-1 when empty)."""
        return memory.kv_pos_min(self._context._handle, seq_id)

    def seq_pos_max(self, seq_id: int = 0) -> int:
        """Largest position held for ``seq_id`` (-1 when empty)."""
        return memory.kv_pos_max(self._context._handle, seq_id)

    @property
    def can_shift(self) -> bool:
        """Whether positions can be shifted (needed for ``on_overflow="shift"``)."""
        return memory.kv_can_shift(self._context._handle)
