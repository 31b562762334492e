"""``TokenStep``: the native work of one generated token, under one pin per handle;
``TokenRun``: the native work of many, in one call.

A generated token costs two native calls: decoding the previous token, then sampling the
next one with its end-of-generation flag and text piece. Going through the handle layer's
``@pinned`` functions made that six pins of the context and sampler (each a call count
taken and given back under ``_TREE``, the context's also its call lock) and an allocation
of the one-token batch; a step pins each handle once for both calls and reuses its batch
and out-parameters. The decode still goes through ``_evaluate`` (Ctrl-C, lost
devices) and the sample through ``sample_piece_at``, the handle layer's own paths.

``TokenRun`` goes further for ``generate``: ``lk_generate_run`` (native/lk_generate.h)
decodes and samples token after token in C until something Python must look at (an
end-of-generation or stop token, a stop string's bytes, the budget, a cancel or Ctrl-C, an
error, 50 ms), and Python then goes over the run's tokens with its usual checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .context import ContextHandle, _evaluate, ctrl_c_is_ours
from .sampler import SamplerHandle, _Scratch, sample_piece_at
from .status import raise_for_decode

__all__ = ["TokenRun", "TokenStep"]

#: Steps of one ``lk_generate_run`` call at most, the bytes of its pieces, and the time
#: after which it hands back to Python (other Python signal handlers than Ctrl-C's run
#: only between calls; at a millisecond a token, 50 tokens a call).
RUN_TOKENS = 256
RUN_PIECE_BYTES = 16384
RUN_MAX_US = 50_000

Step = tuple[int, bool, bytes]


class TokenStep:
    """Sample from sequence 0's last output and decode generated tokens, one at a time.

    For one generation on one thread at a time (the context's gate sees to that): the
    batch and out-parameters are the step's own and reused for every token.
    """

    __slots__ = ("_batch", "_chain_pin", "_context_pin", "_out", "_token", "_top_k", "context",
                 "sampler", "special")

    def __init__(self, context: ContextHandle, sampler: SamplerHandle,
                 special: bool = False) -> None:
        self.context = context
        self.sampler = sampler
        self.special = special
        self._top_k = sampler._promise
        # ``handle.pinned()`` objects hold no state: made once here (not on the handles,
        # which a reference back would keep from being freed when dropped).
        self._context_pin = context.pinned()
        self._chain_pin = sampler.pinned()
        self._out = _Scratch(context.ffi)
        self._token = context.ffi.new("llama_token[1]")
        # positions stay llama.cpp's to assign (pos NULL), the one token keeps its logits
        self._batch = context.lib.llama_batch_get_one(self._token, 1)

    def sample(self) -> Step:
        """The next token, whether it ends generation, and its text piece."""
        with self._context_pin as ctx, self._chain_pin as chain:
            return sample_piece_at(self.sampler, chain, ctx, -1, self._top_k, self.special,
                                   self._out)

    def advance(self, token: int) -> Step:
        """Decode ``token`` after what sequence 0 holds, then ``sample``. A failed decode
        raises its ``DecodeError`` (a ``PromptCache`` syncs to what llama.cpp kept)."""
        with self._context_pin as ctx, self._chain_pin as chain:
            self._token[0] = token
            status = _evaluate(self.context, ctx, self._batch, False)
            if status:
                raise_for_decode(status, "llama_decode")
            return sample_piece_at(self.sampler, chain, ctx, -1, self._top_k, self.special,
                                   self._out)


class TokenRun:
    """Several generated tokens in one native call (``lk_generate_run``): what
    ``TokenStep.advance`` does for one token, repeated in C while nothing needs Python.

    A run stops after a token that ends the generation (end-of-generation, one of
    ``stop_tokens``) or whose piece completes one of ``stops`` (their UTF-8 bytes searched
    in the output, from the ``tail`` the caller says a stop may begin in), so the caller,
    applying its own checks to the run's tokens in order, stops at the run's last token at
    the latest. ``preserved`` tokens' pieces are rendered with special (as the caller
    renders them). For one generation on one thread at a time, as ``TokenStep``.
    """

    __slots__ = ("_buffers", "_chain_pin", "_context_pin", "_decode_status", "_eog",
                 "_n_pieces", "_pieces", "_sample_status", "_stops", "_tokens", "_top_k",
                 "context", "done", "sampler")

    def __init__(self, context: ContextHandle, sampler: SamplerHandle,
                 stop_tokens: Iterable[int] = (), preserved: Iterable[int] = (),
                 stops: Sequence[str] = ()) -> None:
        self.context = context
        self.sampler = sampler
        self._top_k = sampler._promise
        self._context_pin = context.pinned()
        self._chain_pin = sampler.pinned()
        ffi = context.ffi
        # ids outside the vocabulary are never sampled: the C arrays (int32) hold the rest
        n_vocab = sampler.model.n_vocab
        stop_list = sorted({t for t in stop_tokens if 0 <= t < n_vocab})
        preserved_list = sorted({t for t in preserved if 0 <= t < n_vocab})
        encoded = [stop.encode("utf-8") for stop in stops if stop]
        spec = ffi.new("struct lk_generate_stops *")
        # the arrays live as long as the run (cffi frees them with their last reference)
        self._buffers: list[Any] = [
            ffi.new("llama_token[]", stop_list or [0]),
            ffi.new("llama_token[]", preserved_list or [0]),
            ffi.new("char[]", b"".join(encoded) or b"\0"),
            ffi.new("int32_t[]", [len(b) for b in encoded] or [0]),
        ]
        spec.stop_tokens, spec.n_stop_tokens = self._buffers[0], len(stop_list)
        spec.preserved, spec.n_preserved = self._buffers[1], len(preserved_list)
        spec.stops, spec.stop_lens, spec.n_stops = self._buffers[2], self._buffers[3], \
            len(encoded)
        self._stops = spec
        self._tokens = ffi.new("llama_token[]", RUN_TOKENS)
        self._eog = ffi.new("bool[]", RUN_TOKENS)
        self._n_pieces = ffi.new("int32_t[]", RUN_TOKENS)
        self._pieces = ffi.new("char[]", RUN_PIECE_BYTES)
        self._decode_status = ffi.new("int32_t[1]")
        self._sample_status = ffi.new("int32_t[1]")
        #: the whole steps of the last ``run`` (also when it raised)
        self.done: list[Step] = []

    def run(self, token: int, n_max: int, tail: bytes = b"") -> list[Step]:
        """Decode ``token`` and sample the next, then on from it, at most ``n_max`` times
        (taken as 1..``RUN_TOKENS``): the
        whole steps (token, end-of-generation, piece), each
        after one decode (of ``token``, then of each step's token but the last). When a step
        fails after them, raises its error (Ctrl-C's ``KeyboardInterrupt``, the decode's
        ``DecodeError``, the sampler's error, a lost device's) with the whole steps in
        ``done``: the caller's view of the memory needs them. Tests find a run in flight by
        this frame's qualified name (as a decode by ``_evaluate``'s)."""
        context = self.context
        self.done = []
        if context.parked:
            context.unpark()
        ffi = context.ffi
        self._stops.tail = ffi.from_buffer(tail) if tail else ffi.NULL
        self._stops.n_tail = len(tail)
        flag = context._abort_flag
        with self._context_pin as ctx, self._chain_pin as chain:
            n = int(context.lib.lk_generate_run(
                ctx, chain, token, max(1, min(n_max, RUN_TOKENS)), self._top_k, self._stops,
                RUN_MAX_US, flag, ctrl_c_is_ours(), self._tokens, self._eog, self._pieces,
                RUN_PIECE_BYTES, self._n_pieces, self._decode_status, self._sample_status))
        self._stops.tail = ffi.NULL
        context.sampled_in_graph = context.backend_samplers > 0
        steps: list[Step] = []
        if n:
            data = ffi.buffer(self._pieces, RUN_PIECE_BYTES)
            at = 0
            model = self.sampler.model
            for token_i, eog, size in zip(ffi.unpack(self._tokens, n), ffi.unpack(self._eog, n),
                                          ffi.unpack(self._n_pieces, n), strict=True):
                if size >= 0:
                    steps.append((token_i, eog, data[at:at + size]))
                    at += size
                else:  # it did not fit (the run's last step)
                    steps.append((token_i, eog, model.piece(token_i, False)))
        self.done = steps
        if flag[0] == context.lib.LK_ABORT_SIGINT:
            # lk_interrupt took the Ctrl-C in Python's stead: raise what Python's handler
            # would have (as _evaluate does), also when the run ended regardless.
            flag[0] = 0
            raise KeyboardInterrupt
        context.check_devices()
        if self._decode_status[0]:
            raise_for_decode(int(self._decode_status[0]), "llama_decode")
        if self._sample_status[0]:
            self.sampler._raise(int(self._sample_status[0]))
        return steps
