"""``Context.logits`` and ``Context.eval``: raw next-token scores as numpy arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ._context_core import ContextCore
from ._errors import ContextError, ContextOverflowError, EmptyPromptError
from ._native.logits import logit_rows

__all__ = ["LogitsMixin"]


class LogitsMixin(ContextCore):
    """The ``logits`` and ``eval`` methods of ``Context``."""

    def logits(self, rows: int | Sequence[int] = -1) -> npt.NDArray[np.float32]:
        """The logits of the last decode, as a **copy** of just the rows asked for.

        ``rows`` are output indices of that decode (``-1``, the default, is its last
        output: the scores for the token after everything evaluated so far). An int gives
        a 1-D array of ``n_vocab`` floats, a sequence a 2-D array with a row each. A copy,
        because llama.cpp overwrites its buffer on the next decode: a view would change
        under the caller's feet, or outlive the context. Only outputs the decode kept
        exist: after ``generate``, the last one; after ``eval(all_logits=True)``, one per
        token of its last batch of at most ``n_batch`` (``eval`` returns them all).
        """
        single = isinstance(rows, int)
        wanted = [rows] if isinstance(rows, int) else list(rows)
        for index in wanted:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                raise ContextError(f"rows are output indices (integers), got {index!r}")
        with self._lock:
            self._handle.check_open()
            out = logit_rows(self._handle, [int(i) for i in wanted])
        return out[0] if single else out

    def eval(self, tokens: str | Sequence[int], *, all_logits: bool = False
             ) -> npt.NDArray[np.float32]:
        """Evaluate ``tokens`` after what the context holds and return their logits.

        Text is tokenized first (with the model's BOS when the context is empty). Returns
        the next-token logits after the last token (``n_vocab`` floats) or, with
        ``all_logits=True``, one row per token: row ``i`` scores the token that follows
        ``tokens[i]`` (what llama.cpp's per-token ``logits`` flags, llama-cpp-python's
        ``logits_all``, give). Tokens go through in batches of ``n_batch``; ``reset()``
        starts over, and a following ``generate`` reuses what was evaluated here.
        """
        handle = self._handle
        with self._lock:
            handle.check_open()
            held = len(self._cache)
            if isinstance(tokens, str):
                ids = self.model.tokenize(tokens, add_special=held == 0)
            else:
                ids = [self.model._handle.check_token(t) for t in tokens]
            if not ids:
                raise EmptyPromptError("eval() needs at least one token")
            if held + len(ids) > handle.n_ctx_seq:
                raise ContextOverflowError(held + len(ids), handle.n_ctx_seq,
                                           what="the evaluated tokens")
            handle.set_abort(False)
            out = np.empty((len(ids) if all_logits else 1, self.model.n_vocab),
                           dtype=np.float32)
            done = 0
            for n in self._cache.append(ids, handle.n_batch, all_logits):
                if all_logits:
                    out[done:done + n] = logit_rows(handle, list(range(n)))
                done += n
            if not all_logits:
                out[0] = logit_rows(handle, [-1])[0]
        return out if all_logits else out[0]
