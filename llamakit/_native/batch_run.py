"""``BatchRun``: the steps of a batch's generating sequences in one native call.

``lk_batch_run`` (native/lk_batch_run.h) samples every sequence, decides which end, and
decodes the others' tokens as the next batch, step after step in C until a sequence ends
(or a piece does not fit, ``RUN_STEPS``, ``RUN_MAX_US``, a cancel or Ctrl-C, an error). A
batch step through Python cost 0.2-0.4 ms of host time at 32-64 sequences on the
critical path between two decodes, where a GPU idles; a run costs that once. What Python
did a step (the ends of generation, the next batch's columns) the run does a step; what
only the caller's results need (the tokens, the text) Python takes once a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import ContextError
from .context import ctrl_c_is_ours
from .sample_step import _begin_calls, _end_calls
from .status import raise_for_decode

if TYPE_CHECKING:
    from .batch import BatchHandle
    from .context import ContextHandle
    from .sampler import SamplerHandle

__all__ = ["RUN_MAX_US", "RUN_PIECE_BYTES", "RUN_STEPS", "BatchRun", "SeqRun"]

#: Steps of one run at most, each sequence's bytes of pieces a run, and the time after
#: which a run hands back to Python (other Python signal handlers than Ctrl-C's run only
#: between native calls; a step of 64 sequences of an 8B model takes 15-20 ms on an H200).
RUN_STEPS = 256
RUN_PIECE_BYTES = 8192
RUN_MAX_US = 250_000


@dataclass(frozen=True, slots=True)
class SeqRun:
    """What one run did with a sequence: the tokens it sampled (a last end-of-generation or
    stop token included: ``finish`` 1), how many of them went into a decode, the bytes of
    its generated tokens' pieces (``missing``: the last one's did not fit, not in
    ``pieces``), ``finish`` (0 going on, 1 end-of-generation or stop token, 2 budget spent)
    and its output row in the decode the run started at its end (-1: none)."""

    tokens: list[int]
    decoded: int
    pieces: bytes
    missing: bool
    finish: int
    output: int


class BatchRun:
    """Runs ``lk_batch_run`` for a ``BatchStepper``: its sequence records, token and piece
    buffers are allocated once, for up to ``capacity`` sequences; for one batch on one
    thread at a time (the context's gate sees to that)."""

    def __init__(self, context: ContextHandle, batch: BatchHandle, capacity: int) -> None:
        self._context = context
        self._batch = batch
        ffi = context.ffi
        self._capacity = capacity
        # the sizes the buffers were made with (a run takes at most _steps steps)
        self._steps, self._piece_bytes = steps, piece_bytes = RUN_STEPS, RUN_PIECE_BYTES
        self._seqs = ffi.new("struct lk_batch_seq[]", capacity)
        self._tokens = ffi.new("llama_token[]", capacity * steps)
        self._pieces = ffi.new("char[]", capacity * piece_bytes)
        for i in range(capacity):
            seq = self._seqs[i]
            seq.tokens = self._tokens + i * steps
            seq.pieces = self._pieces + i * piece_bytes
            seq.pieces_cap = piece_bytes
        self._status = ffi.new("int32_t[3]")
        # sorted C arrays of the token sets passed so far (a batch's slots share theirs)
        self._arrays: dict[frozenset[int], tuple[Any, int]] = {}
        self._empty = ffi.new("llama_token[1]")

    def _array(self, tokens: frozenset[int]) -> tuple[Any, int]:
        if not tokens:
            return self._empty, 0
        found = self._arrays.get(tokens)
        if found is None:
            # ids outside the vocabulary are never sampled: the C arrays (int32) hold the rest
            n_vocab = self._context.model.n_vocab
            listed = sorted(t for t in tokens if 0 <= t < n_vocab)
            found = (self._context.ffi.new("llama_token[]", listed or [0]), len(listed))
            if len(self._arrays) > 64:
                self._arrays.clear()
            self._arrays[tokens] = found
        return found

    def run(self, chains: Sequence[SamplerHandle], rows: Sequence[int],
            seq_ids: Sequence[int], positions: Sequence[int], budgets: Sequence[int],
            stop_tokens: Sequence[frozenset[int]], preserved: Sequence[frozenset[int]],
            n_max: int, launch_last: bool) -> tuple[int, list[SeqRun], BaseException | None]:
        """One run over the sequences (in the last decode's row order, ``rows`` their output
        rows there): the number of whole steps, what it did with each sequence, and the
        error that ended it (Ctrl-C's ``KeyboardInterrupt``, a decode's ``DecodeError``, a
        sampler's error, a lost device's), which the caller raises once it has taken the
        results in (its view of the memory needs them). Tests find a run in flight by
        this frame's qualified name."""
        context, batch = self._context, self._batch
        n = len(chains)
        if not 0 < n <= min(self._capacity, batch.capacity):
            raise ContextError(f"a batch run takes 1..{min(self._capacity, batch.capacity)} "
                               f"sequences, got {n}")
        context._check_batch(n)
        seqs = self._seqs
        for i in range(n):
            seq = seqs[i]
            chain = chains[i]
            seq.top_k = chain._promise
            seq.seq_id = seq_ids[i]
            seq.pos = positions[i]
            seq.output = rows[i]
            seq.budget = budgets[i]
            seq.stop_tokens, seq.n_stop_tokens = self._array(stop_tokens[i])
            seq.preserved, seq.n_preserved = self._array(preserved[i])
        if context.parked:
            context.unpark()
        lib, ffi = context.lib, context.ffi
        status = self._status
        flag = context._abort_flag
        ctx = context._begin_call()
        try:
            _begin_calls(chains)
            try:
                for i in range(n):
                    seqs[i].chain = chains[i]._ptr  # pinned: the pointer holds
                with batch.pinned() as native_batch:
                    done = int(lib.lk_batch_run(
                        ctx, native_batch, batch.capacity, seqs, n,
                        max(1, min(n_max, self._steps)),
                        RUN_MAX_US, launch_last, flag, ctrl_c_is_ours(), status, status + 1,
                        status + 2))
                for i in range(n):
                    seqs[i].chain = ffi.NULL
            finally:
                _end_calls(chains)
        finally:
            context._end_call()
        context.sampled_in_graph = context.backend_samplers > 0
        results: list[SeqRun] = []
        room = self._piece_bytes
        pieces = ffi.buffer(self._pieces, n * room)
        for i in range(n):
            seq = seqs[i]
            start = i * room
            results.append(SeqRun(
                ffi.unpack(seq.tokens, seq.n_tokens), seq.n_decoded,
                pieces[start:start + seq.n_bytes], bool(seq.piece_missing), seq.finish,
                seq.output))
        return done, results, self._error(chains)

    def _error(self, chains: Sequence[SamplerHandle]) -> BaseException | None:
        """What ended the last run, if not its own limits (see ``run``)."""
        context, status = self._context, self._status
        flag = context._abort_flag
        try:
            if flag[0] == context.lib.LK_ABORT_SIGINT:
                # lk_interrupt took the Ctrl-C in Python's stead: raise what Python's
                # handler would have (as _evaluate does), also when the run ended regardless.
                flag[0] = 0
                raise KeyboardInterrupt
            context.check_devices()
            if status[0]:
                raise_for_decode(int(status[0]), "llama_decode")
            if status[1]:
                chains[max(0, int(status[2]))]._raise(int(status[1]))
        except BaseException as error:  # noqa: BLE001 - handed to the caller to raise
            return error
        return None
