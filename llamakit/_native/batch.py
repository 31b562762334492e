"""``BatchHandle``: an owned ``llama_batch`` for decoding several sequences at once."""

from __future__ import annotations

from collections.abc import Callable
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
        self.n_tokens = i + 1
        return i

    @pinned
    def decode(self, context: ContextHandle, *, encode: bool = False) -> None:
        """Evaluate the batch through the context's one checked path (sizes, Ctrl-C)."""
        batch = self.ptr
        batch.n_tokens = self.n_tokens
        context.evaluate_batch(batch, self.n_tokens, encode=encode)
