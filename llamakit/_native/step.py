"""``TokenStep``: the native work of one generated token, under one pin per handle.

A generated token costs two native calls: decoding the previous token, then sampling the
next one with its end-of-generation flag and text piece. Going through the handle layer's
``@pinned`` functions made that six pins of the context and sampler (each a call count
taken and given back under ``_TREE``, the context's also its call lock) and an allocation
of the one-token batch; a step pins each handle once for both calls and reuses its batch
and out-parameters. The decode still goes through ``_evaluate`` (Ctrl-C, lost
devices) and the sample through ``sample_piece_at``, the handle layer's own paths.
"""

from __future__ import annotations

from .context import ContextHandle, _evaluate
from .sampler import SamplerHandle, _Scratch, sample_piece_at
from .status import raise_for_decode

__all__ = ["TokenStep"]


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

    def sample(self) -> tuple[int, bool, bytes]:
        """The next token, whether it ends generation, and its text piece."""
        with self._context_pin as ctx, self._chain_pin as chain:
            return sample_piece_at(self.sampler, chain, ctx, -1, self._top_k, self.special,
                                   self._out)

    def advance(self, token: int) -> tuple[int, bool, bytes]:
        """Decode ``token`` after what sequence 0 holds, then ``sample``. A failed decode
        raises its ``DecodeError`` (a ``PromptCache`` syncs to what llama.cpp kept)."""
        with self._context_pin as ctx, self._chain_pin as chain:
            self._token[0] = token
            status = _evaluate(self.context, ctx, self._batch, False)
            if status:
                raise_for_decode(status, "llama_decode")
            return sample_piece_at(self.sampler, chain, ctx, -1, self._top_k, self.special,
                                   self._out)
