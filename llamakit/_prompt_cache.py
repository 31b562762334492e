"""``PromptCache``: which tokens sequence 0 of a context holds, and the operations that
keep that knowledge true.

A ``generate`` call reuses the KV cache for the prefix its prompt shares with what was
evaluated before; that works only while this list is exactly what llama.cpp holds. Every
change to sequence 0 therefore goes through here: evaluating a prompt, decoding a token,
a failed or interrupted decode (``sync``), a context shift, a hand edit of the KV cache
(``forget``/``truncate``), a restored state (``replace``), and an emptied memory. A change
llama.cpp makes on its own (applying LoRA adapters empties the memory) bumps the handle's
``memory_epoch``, which makes the next ``evaluate`` start from nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ._determinism import aligned_after, reusable_prefix
from ._native import memory
from ._overflow import shift_plan

if TYPE_CHECKING:
    from ._native.context import ContextHandle
    from ._native.step import Step, TokenRun, TokenStep

__all__ = ["PromptCache", "common_prefix"]

_BLOCK = 256


def common_prefix(old: Sequence[int], new: Sequence[int]) -> int:
    """How many leading tokens ``old`` and ``new`` share. Whole blocks are compared as
    slices, at C speed: a Python step per token cost about 30 ns, 0.1 ms for a 4,096-token
    conversation that a chat call mostly repeats; only the block that differs is walked."""
    n = min(len(old), len(new))
    for start in range(0, n, _BLOCK):
        end = min(start + _BLOCK, n)
        if old[start:end] != new[start:end]:  # or only their types differ (list, tuple)
            for i in range(start, end):
                if old[i] != new[i]:
                    return i
    return n


class PromptCache:
    """The tokens of sequence 0, in position order. The caller holds the context's lock."""

    def __init__(self, handle: ContextHandle) -> None:
        self._handle = handle
        self._tokens: list[int] = []
        self._epoch = handle.memory_epoch
        # Leading held tokens decoded in a fresh context's chunks (see _determinism), and
        # whether the held list came from a restored state (reused as given).
        self._aligned = 0
        self._as_given = False

    def _keep_aligned(self, limit: int) -> None:
        n_batch = self._handle.n_batch
        self._aligned = min(self._aligned, limit) // n_batch * n_batch
        self._as_given = False

    @property
    def tokens(self) -> list[int]:
        """A copy of the held tokens."""
        return list(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def append(self, tokens: Sequence[int], n_batch: int, all_logits: bool = False
               ) -> Iterator[int]:
        """Decode ``tokens`` after the held ones in chunks of ``n_batch``; yields each
        chunk's length once decoded, so the caller reads its logits before the next."""
        handle = self._handle
        if self._epoch != handle.memory_epoch:
            self._tokens, self._epoch = [], handle.memory_epoch
            self._aligned, self._as_given = 0, False
        held = len(self._tokens)
        aligned = held if self._as_given else self._aligned
        self._aligned, self._as_given = min(aligned, held), False
        done = 0
        try:
            for start in range(0, len(tokens), n_batch):
                chunk = tokens[start:start + n_batch]
                self.decode(chunk, all_logits)
                done += len(chunk)
                yield len(chunk)
        finally:
            self._aligned = aligned_after(held, held + done, self._aligned, n_batch)

    def evaluate(self, tokens: list[int], n_batch: int, exact: bool = False) -> int:
        """Bring sequence 0 to ``tokens``, reusing the shared prefix; returns its length.
        The last token is always evaluated (its logits are the next token's). ``exact``:
        reuse only what a fresh context would compute the same way (``_determinism``); a
        restored state counts as cached as it is (reusing it is the point of restoring)."""
        handle = self._handle
        if self._epoch != handle.memory_epoch:
            self._tokens, self._epoch = [], handle.memory_epoch
            self._aligned, self._as_given = 0, False
        aligned = len(self._tokens) if self._as_given else self._aligned
        exact = exact and not self._as_given
        common = min(common_prefix(self._tokens, tokens), len(tokens) - 1)
        common = reusable_prefix(common, aligned, n_batch, exact)
        # Sequence 0 may hold cells this cache does not know of (a sequence state restored
        # from another sequence records no tokens): those go too, or the prompt would be
        # appended after them.
        if (common < len(self._tokens) or handle.pos_max(0) >= common) \
                and not handle.remove_from(0, common):
            handle.clear_memory()
            common = 0
        self._tokens = self._tokens[:common]
        self._aligned, self._as_given = min(aligned, common), False
        for start in range(common, len(tokens), n_batch):
            self.decode(tokens[start:start + n_batch])
        self._aligned = aligned_after(common, len(tokens), self._aligned, n_batch)
        return common

    def decode(self, tokens: Sequence[int], all_logits: bool = False) -> None:
        """Decode ``tokens`` (at most ``n_batch``) after the held ones; with ``all_logits``
        every token keeps its logits (``Context.eval``), else only the last."""
        try:
            self._handle.decode(tokens, all_logits)
        except BaseException:
            self._sync(tokens)
            raise
        self._tokens.extend(tokens)

    def advance(self, step: TokenStep, token: int) -> tuple[int, bool, bytes]:
        """Decode the generated ``token`` after the held ones and sample the next one:
        ``step.advance``, which pins the context once for both native calls."""
        try:
            result = step.advance(token)
        except BaseException:
            self._sync((token,))  # the decode may have failed, or the sample after it
            raise
        self._tokens.append(token)
        return result

    def run(self, runner: TokenRun, token: int, n_max: int, tail: bytes) -> list[Step]:
        """``runner.run``: decode the generated ``token`` and each step's token but the last
        after the held ones, sampling after each (see ``TokenRun``)."""
        try:
            steps = runner.run(token, n_max, tail)
        except BaseException:
            done = runner.done
            inputs = [token, *(step[0] for step in done)]
            self._tokens.extend(inputs[:len(done)])
            self._sync(inputs[len(done):len(done) + 1])  # the failed step's decode
            raise
        self._tokens.append(token)
        self._tokens.extend(step[0] for step in steps[:-1])
        return steps

    def drop_last(self, n: int) -> None:
        """Remove the last ``n`` tokens of sequence 0 (decoded ahead of what a generation
        kept)."""
        if n > 0:
            held = len(self._tokens) - n
            if not self._handle.remove_from(0, held):
                self.clear()
                return
            self._tokens = self._tokens[:held]
            self._keep_aligned(held)

    def _sync(self, pending: Sequence[int]) -> None:
        # After a failed or interrupted decode llama.cpp keeps the micro-batches it finished
        # and drops the one it was in: hold what sequence 0 now holds.
        known = [*self._tokens, *pending]
        held = self._handle.pos_max(0) + 1
        if held <= len(known):
            self._tokens = known[:held]
            self._keep_aligned(held)
        else:
            self.clear()

    def shift(self, n_keep: int) -> None:
        """llama.cpp's context shift: keep ``n_keep`` tokens, drop half of the rest, move
        what follows down."""
        n_past = len(self._tokens)
        discard = shift_plan(n_past, n_keep)
        memory.kv_remove(self._handle, 0, n_keep, n_keep + discard)
        memory.kv_add(self._handle, 0, n_keep + discard, n_past, -discard)
        self._tokens = self._tokens[:n_keep] + self._tokens[n_keep + discard:]
        self._keep_aligned(n_keep)  # what follows n_keep sits at shifted positions now

    def clear(self) -> None:
        """Empty the whole memory (every sequence) and the held list."""
        self._handle.clear_memory()
        self._tokens = []
        self._keep_aligned(0)

    def forget(self) -> None:
        """Sequence 0 was edited by hand: drop it, so the next prompt is evaluated whole."""
        self._tokens = []
        self._keep_aligned(0)
        memory.kv_remove(self._handle, 0, -1, -1)

    def truncate(self, p0: int, p1: int) -> None:
        """Positions ``[p0, p1)`` of sequence 0 were removed (negative: open-ended)."""
        if p1 < 0 or p1 >= len(self._tokens):
            self._tokens = self._tokens[:max(p0, 0)]
            self._keep_aligned(len(self._tokens))
        else:
            self.forget()  # a hole in the middle: the cached prefix is no longer known

    def replace(self, tokens: Sequence[int]) -> None:
        """A restored state put ``tokens`` into sequence 0."""
        self._tokens = list(tokens)
        self._as_given = True

    def drop(self) -> None:
        """Another user of the memory (batched generation) is about to overwrite it."""
        self._tokens = []
        self._keep_aligned(0)
