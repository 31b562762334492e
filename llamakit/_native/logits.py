"""Logits and log-probabilities read from a context's last decode (native/lk_logprobs.h).

The log-softmax and the top-k run in C over the logits llama.cpp holds (no copy of the row
and no Python loop over the vocabulary); rows handed to Python are copies of just the rows
asked for, since llama.cpp reuses its logits buffer on the next decode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import ContextError
from .._logprobs import StreamPiece, TokenLogprob, TopLogprob
from .context import ContextHandle
from .handle import pinned
from .model import ModelHandle

__all__ = ["LogprobReader", "LogprobRecorder", "logit_rows", "nll_rows"]


class LogprobReader:
    """Reads the chosen token's log-probability and the ``top_k`` best alternatives after
    each sample, from the raw logits or (``post_sampling``) from the candidates the sampler
    chain left. Buffers are allocated once per generation."""

    def __init__(self, context: ContextHandle, top_k: int, post_sampling: bool) -> None:
        self.context = context
        self.top_k = top_k
        self.post_sampling = post_sampling
        ffi = context.ffi
        self._ids = ffi.new("llama_token[]", max(top_k, 1))
        self._values = ffi.new("double[]", max(top_k, 1))
        self._n_top = ffi.new("int32_t *")
        self._n_vocab = context.model.n_vocab

    def read(self, token: int, index: int = -1) -> tuple[float, list[tuple[int, float]]]:
        """(log p(token), [(id, log p), ...] best first) for output ``index`` of the last
        decode, the one ``token`` was just sampled from. A batched decode samples each
        sequence from its own output row; post-sampling figures come from the candidates of
        this thread's last sample, so read right after the sample, before the next one."""
        context, lib = self.context, self.context.lib
        with context.pinned():
            row = lib.llama_get_logits_ith(context.ptr, index)
            if row == context.ffi.NULL:
                raise ContextError("the context holds no logits to read log-probabilities "
                                   "from")
            if self.post_sampling:
                value = float(lib.lk_logprobs_sampled(row, self._n_vocab, token, self.top_k,
                                                      self._ids, self._values, self._n_top))
                n_top = int(self._n_top[0])
            else:
                value = float(lib.lk_logprobs(row, self._n_vocab, token, self.top_k,
                                              self._ids, self._values))
                n_top = min(self.top_k, self._n_vocab)
        ids, values = self._ids, self._values
        return value, [(int(ids[i]), float(values[i])) for i in range(n_top)]


@pinned
def logit_rows(context: ContextHandle, rows: Sequence[int]) -> npt.NDArray[np.float32]:
    """A copy of output rows ``rows`` (negative counts from the end) of the last decode,
    shape ``(len(rows), n_vocab)``."""
    context.check_raw_logits()
    lib, ffi, n_vocab = context.lib, context.ffi, context.model.n_vocab
    out = np.empty((len(rows), n_vocab), dtype=np.float32)
    for i, index in enumerate(rows):
        ptr = lib.llama_get_logits_ith(context.ptr, index)
        if ptr == ffi.NULL:
            raise ContextError(f"the last decode kept no logits for output {index}")
        out[i] = np.frombuffer(ffi.buffer(ptr, 4 * n_vocab), dtype=np.float32)
    return out


@pinned
def nll_rows(context: ContextHandle, first_output: int, targets: Sequence[int] | None = None,
             logits: npt.NDArray[np.float32] | None = None,
             n_rows: int | None = None) -> tuple[float, float]:
    """(sum of -log p, sum of its squares) over consecutive logit rows scoring ``targets``:
    from the last decode's outputs starting at batch index ``first_output``, or from
    ``logits`` (rows gathered over several decodes) when given."""
    lib, ffi, n_vocab = context.lib, context.ffi, context.model.n_vocab
    assert targets is not None
    rows = len(targets) if n_rows is None else n_rows
    ids = ffi.new("llama_token[]", list(targets))
    nll, nll2 = ffi.new("double *"), ffi.new("double *")
    source: Any
    if logits is not None:
        data = np.ascontiguousarray(logits, dtype=np.float32)
        source = ffi.cast("float *", ffi.from_buffer(data))
    else:
        context.check_raw_logits()
        source = lib.llama_get_logits_ith(context.ptr, first_output)
        if source == ffi.NULL:
            raise ContextError(f"the last decode kept no logits for output {first_output}")
    lib.lk_nll_rows(source, rows, n_vocab, ids, nll, nll2)
    return float(nll[0]), float(nll2[0])


class LogprobRecorder:
    """Collects a ``TokenLogprob`` per generated token during one generation."""

    def __init__(self, context: ContextHandle, model: ModelHandle, top_k: int,
                 post_sampling: bool) -> None:
        self._reader = LogprobReader(context, top_k, post_sampling)
        self._model = model
        self._texts: dict[int, tuple[str, bytes]] = {}
        self.entries: list[TokenLogprob] = []
        self._pending = 0  # entries not yet attached to a streamed piece

    @property
    def post_sampling(self) -> bool:
        """Whether the figures come from the candidates of the thread's last sample."""
        return self._reader.post_sampling

    def _text(self, token: int) -> tuple[str, bytes]:
        known = self._texts.get(token)
        if known is None:
            raw = self._model.piece(token, True)
            known = self._texts[token] = (raw.decode("utf-8", "replace"), raw)
        return known

    def record(self, token: int, index: int = -1) -> None:
        """Record ``token``, just sampled from output ``index`` of the last decode."""
        value, top = self._reader.read(token, index)
        text, raw = self._text(token)
        self.entries.append(TokenLogprob(
            token, text, raw, value,
            tuple(TopLogprob(t, self._text(t)[0], v) for t, v in top)))

    def piece(self, text: str) -> StreamPiece:
        """``text`` carrying the entries recorded since the previous piece."""
        pending = tuple(self.entries[self._pending:])
        self._pending = len(self.entries)
        return StreamPiece(text, pending)
