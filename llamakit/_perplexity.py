"""``Model.perplexity``: llama.cpp's ``llama-perplexity`` method, figure for figure.

The text is tokenized once (with BOS when the model adds one) and cut into ``n_chunk``
chunks of ``n_ctx`` tokens (a partial last chunk is dropped). Each chunk is evaluated
from an empty cache with its first token replaced by BOS (when the model adds one); only
the second half is scored: the logits at positions ``n_ctx/2 .. n_ctx-2`` predict the
tokens after them, so every scored token has at least ``n_ctx/2`` tokens of context. When
``n_batch >= 2 * n_ctx``, ``n_batch / n_ctx`` chunks go through one decode as separate
sequences, as llama-perplexity does; with ``n_batch < n_ctx`` a chunk takes several
decodes. PPL = exp(mean negative log-likelihood); the uncertainty is llama-perplexity's
standard error of that mean, scaled by PPL.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ._config.fields import check_fields
from ._config.schema import ContextConfig
from ._errors import ConfigError, ContextError
from ._native.batch import BatchHandle
from ._native.logits import logit_rows, nll_rows

if TYPE_CHECKING:
    from ._model import Model

__all__ = ["PerplexityResult", "perplexity"]


@dataclass(frozen=True)
class PerplexityResult:
    """``perplexity`` is llama-perplexity's "Final estimate: PPL", ``uncertainty`` its
    "+/-"; ``chunks`` the running estimate after each chunk (its ``[1]..[n]`` figures)."""

    perplexity: float
    uncertainty: float
    n_ctx: int
    n_tokens: int
    n_scored: int
    chunks: list[float] = field(default_factory=list)


def perplexity(model: Model, text: str, *, n_ctx: int = 512, n_batch: int = 2048,
               n_ubatch: int = 512, n_chunks: int | None = None,
               n_threads: int | None = None,
               progress: Callable[[int, int, float], None] | None = None
               ) -> PerplexityResult:
    """See ``Model.perplexity``."""
    # The [context] keys are the schema's (one source); n_chunks is this call's own.
    check_fields(ContextConfig, {"n_ctx": n_ctx, "n_batch": n_batch, "n_ubatch": n_ubatch,
                                 "n_threads": n_threads})
    if n_ctx < 4:
        raise ConfigError("n_ctx must be at least 4 for perplexity (half of each chunk is "
                          "context, the other half is scored)", key="n_ctx")
    if n_chunks is not None and (isinstance(n_chunks, bool) or not isinstance(n_chunks, int)
                                 or n_chunks <= 0):
        raise ConfigError(f"n_chunks must be a positive integer or None, got {n_chunks!r}",
                          key="n_chunks")
    if model._handle.add_eos():
        raise ConfigError("perplexity needs a model whose tokenizer adds no EOS "
                          "(llama-perplexity refuses it too)")
    tokens = model.tokenize(text, add_special=True, parse_special=False)
    if len(tokens) < 2 * n_ctx:
        raise ContextError(f"the text has {len(tokens)} tokens; perplexity with n_ctx={n_ctx} "
                           f"needs at least {2 * n_ctx} (two chunks)")
    # llama-perplexity: n_seq chunks per decode, context of n_seq * n_ctx, n_batch capped.
    n_seq = max(1, n_batch // n_ctx)
    if n_batch >= n_ctx and n_batch % n_ctx != 0:
        raise ConfigError(f"n_batch={n_batch} must be below n_ctx={n_ctx} or a multiple of it "
                          "(llama-perplexity's rule)", key="n_batch")
    n_batch = min(n_batch, n_seq * n_ctx)
    n_chunk_max = len(tokens) // n_ctx
    n_chunk = n_chunk_max if n_chunks is None else min(n_chunks, n_chunk_max)
    add_bos = model.add_bos
    bos = model.bos_token
    first = n_ctx // 2
    n_batches = (n_ctx + n_batch - 1) // n_batch
    count, nll, nll2 = 0, 0.0, 0.0
    chunks: list[float] = []
    with model.new_context(n_ctx=n_seq * n_ctx, n_batch=n_batch,
                           n_ubatch=min(n_ubatch, n_batch), n_seq_max=n_seq,
                           n_threads=n_threads, kv_unified=False) as ctx:
        handle = ctx._handle
        batch = BatchHandle(handle.native, n_batch)
        try:
            for i in range(0, n_chunk, n_seq):
                start = i * n_ctx
                n_seq_batch = min(n_seq, n_chunk - i)
                handle.clear_memory()
                gathered: list[np.ndarray] = []
                for j in range(n_batches):
                    batch_start = start + j * n_batch
                    size = min(start + n_ctx - batch_start, n_batch)
                    batch.clear()
                    for seq in range(n_seq_batch):
                        seq_start = batch_start + seq * n_ctx
                        for k in range(size):
                            token = tokens[seq_start + k]
                            if k == 0 and j == 0 and add_bos and bos is not None:
                                token = bos
                            pos = j * n_batch + k
                            batch.add(token, pos, seq, pos >= first)
                    batch.decode(handle)
                    n_outputs = sum(1 for k in range(size) if j * n_batch + k >= first)
                    if n_batches > 1 and n_outputs:
                        gathered.append(logit_rows(handle, list(range(n_outputs))))
                for seq in range(n_seq_batch):
                    scored = start + seq * n_ctx + first
                    targets = tokens[scored + 1:scored + n_ctx - first]
                    if n_batches > 1:
                        rows = np.concatenate(gathered)
                        s1, s2 = nll_rows(handle, 0, targets, logits=rows)
                    else:
                        s1, s2 = nll_rows(handle, seq * n_ctx + first, targets)
                    nll += s1
                    nll2 += s2
                    count += n_ctx - first - 1
                    chunks.append(math.exp(nll / count))
                    if progress is not None:
                        progress(i + seq + 1, n_chunk, chunks[-1])
        finally:
            batch.close()
    mean = nll / count
    variance = nll2 / count - mean * mean
    ppl = math.exp(mean)
    error = math.sqrt(variance / (count - 1)) * ppl if variance > 0 and count > 1 else 0.0
    return PerplexityResult(perplexity=ppl, uncertainty=error, n_ctx=n_ctx,
                            n_tokens=len(tokens), n_scored=count, chunks=chunks)
