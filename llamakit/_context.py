"""``Context``: the public class, assembled from the features built on ``ContextCore``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ._batch import BatchMixin
from ._chat.mixin import ChatMixin
from ._config.fields import check_fields
from ._config.schema import ContextConfig
from ._context_lora import LoraMixin
from ._embeddings import POOLING as _POOLING
from ._embeddings import POOLING_NAMES as _POOLING_NAMES
from ._embeddings import EmbeddingsMixin
from ._errors import ConfigError
from ._native.context import ContextHandle
from ._state import StateMixin

if TYPE_CHECKING:
    from ._model import Model

__all__ = ["Context"]

class Context(ChatMixin, StateMixin, LoraMixin, EmbeddingsMixin, BatchMixin):
    """Evaluation state (KV cache, threads, batch sizes) over a ``Model``.

    Made by ``Model.new_context()``. One context serves one thread at a time: calls from
    a second thread wait for the first to finish. An unfinished ``stream`` holds the
    context: another thread's call waits for it (or takes the context over once the
    stream's thread has ended), and a second call from the stream's own thread raises
    ``ContextBusyError``. Consecutive ``generate`` calls reuse the part of the KV cache
    that the new prompt shares with what was evaluated before (see ``deterministic``).
    """

    # Each base is a feature built on ContextCore (docs/architecture.md, "The Context
    # core"); ChatMixin builds on Generation (generate, stream).

    @classmethod
    def _create(cls, model: Model, *, n_ctx: int | None, n_batch: int, n_ubatch: int,
                n_threads: int | None, n_threads_batch: int | None, embeddings: bool,
                seed: int | None, pooling: str | None, n_seq_max: int = 1,
                kv_unified: bool | None = None, deterministic: bool | None = None) -> Context:
        # The [context] keys: checked by ContextConfig, the schema the TOML keys use too.
        checked = check_fields(ContextConfig, {
            "n_ctx": n_ctx, "n_batch": n_batch, "n_ubatch": n_ubatch, "n_threads": n_threads,
            "n_threads_batch": n_threads_batch, "embeddings": embeddings, "seed": seed,
            "n_seq_max": n_seq_max, "kv_unified": kv_unified, "deterministic": deterministic})
        n_ctx, n_batch, n_seq_max = checked["n_ctx"], checked["n_batch"], checked["n_seq_max"]
        info = model.info
        if n_ctx is None:
            n_ctx = min(info.n_ctx_train, 4096) if info.n_ctx_train > 0 else 4096
        n_threads = (os.cpu_count() or 1) if n_threads is None else n_threads
        n_threads_batch = n_threads if n_threads_batch is None else n_threads_batch
        if pooling not in _POOLING:
            raise ConfigError(f"pooling must be one of {sorted(k for k in _POOLING if k)} or "
                              f"None, got {pooling!r}", key="pooling")
        if n_seq_max > n_batch:
            # llama.cpp reserves an output row per sequence within n_batch, and asserts.
            raise ConfigError(f"n_seq_max={n_seq_max} must not exceed n_batch={n_batch}",
                              key="n_seq_max")
        if kv_unified is None:
            kv_unified = embeddings
        handle = ContextHandle(
            model._handle, n_ctx=n_ctx, n_batch=n_batch, n_ubatch=min(n_ubatch, n_batch),
            n_seq_max=n_seq_max, n_threads=n_threads,
            n_threads_batch=n_threads_batch,
            embeddings=embeddings, pooling_type=_POOLING[pooling], kv_unified=kv_unified)
        return cls(model, handle, seed=seed, n_threads=n_threads,
                   n_threads_batch=n_threads_batch, deterministic=deterministic)

    # -- lifecycle: close/closed/with come from Owned (via ContextCore) ---------------
    def __repr__(self) -> str:
        if self.closed:
            return "<llamakit.Context closed>"
        return f"<llamakit.Context n_ctx={self.n_ctx} n_batch={self.n_batch}>"

    # -- facts (n_ctx, n_batch, n_ubatch: ContextCore) -------------------------------
    @property
    def pooling(self) -> str:
        self._handle.check_open()
        return _POOLING_NAMES.get(self._handle.pooling_type, "none")

    # -- tokens --------------------------------------------------------------------------
    def tokenize(self, text: str | bytes, add_special: bool = True,
                 parse_special: bool = False) -> list[int]:
        """Same as ``Model.tokenize``."""
        self._handle.check_open()
        return self.model.tokenize(text, add_special, parse_special)

    def detokenize(self, tokens: list[int] | tuple[int, ...], remove_special: bool = False,
                   unparse_special: bool = False) -> str:
        """Same as ``Model.detokenize``."""
        self._handle.check_open()
        return self.model.detokenize(tokens, remove_special, unparse_special)
