"""``BatchHandle``: an owned ``llama_batch`` for decoding several sequences at once."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from typing import Any

from .._errors import ContextError
from .context import ContextHandle
from .handle import Handle, pinned
from .lib import NativeLib

__all__ = ["BatchHandle"]


def _batch_freer(native: NativeLib) -> Callable[[Any], None]:
    def free(batch: Any) -> None:
        native.lib.llama_batch_free(batch)

    return free


class BatchHandle(Handle):
    """Up to ``capacity`` tokens, each with a position, one sequence id and an output flag.

    The caller passes valid token ids, positions and sequence ids (checked by the
    context's public layer); ``add`` refuses to overflow the batch.
    """

    kind = "batch"

    def __init__(self, native: NativeLib, capacity: int) -> None:
        batch = native.lib.llama_batch_init(capacity, 0, 1)
        # llama_batch is a struct passed by value: the finalizer needs the struct itself.
        super().__init__(native, batch, _batch_freer(native))
        self.capacity = capacity
        self.n_tokens = 0
        # The sequence-id column as ``fill`` last wrote it (None: ``add`` wrote since), and
        # how many leading ``n_seq_id`` entries hold 1: a batch step writes the same 64
        # ids step after step, each a cffi store of its own.
        self._seq_column: list[int] | None = None
        self._ones = 0

    def clear(self) -> None:
        self.n_tokens = 0

    @pinned
    def add(self, token: int, pos: int, seq_id: int, output: bool) -> int:
        """Append one token; returns its index in the batch (where its logits will be)."""
        if self.n_tokens >= self.capacity:
            raise ContextError(f"batch is full ({self.capacity} tokens)")
        batch, i = self.ptr, self.n_tokens
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq_id
        batch.logits[i] = 1 if output else 0
        self._seq_column = None
        self.n_tokens = i + 1
        return i

    @pinned
    def fill(self, tokens: Sequence[int], positions: Sequence[int], seq_ids: Sequence[int],
             outputs: Sequence[int]) -> None:
        """Make the batch exactly these tokens (one sequence id each; ``outputs`` 1 where
        the token keeps its logits), under one pin: what ``add`` does a token at a time,
        at a fraction of the cost per token (a batch step of 64 sequences)."""
        n = len(tokens)
        if n > self.capacity:
            raise ContextError(f"batch is full ({self.capacity} tokens)")
        if not len(positions) == len(seq_ids) == len(outputs) == n:
            raise ContextError("tokens, positions, sequence ids and output flags differ in "
                               "length")
        ffi, batch = self.ffi, self.ptr
        if n:
            ffi.memmove(batch.token, array("i", tokens), 4 * n)
            ffi.memmove(batch.pos, array("i", positions), 4 * n)
            if n > self._ones:
                ffi.memmove(batch.n_seq_id, array("i", [1]) * n, 4 * n)
                self._ones = n
            ffi.memmove(batch.logits, bytes(outputs), n)
            column = self._seq_column
            if column is None or seq_ids != column[:n]:
                seq = batch.seq_id
                for i, seq_id in enumerate(seq_ids):
                    seq[i][0] = seq_id
                self._seq_column = list(seq_ids) if column is None or n >= len(column) \
                    else list(seq_ids) + column[n:]
        self.n_tokens = n

    @pinned
    def decode(self, context: ContextHandle, *, encode: bool = False) -> None:
        """Evaluate the batch through the context's one checked path (sizes, Ctrl-C)."""
        batch = self.ptr
        batch.n_tokens = self.n_tokens
        context.evaluate_batch(batch, self.n_tokens, encode=encode)
