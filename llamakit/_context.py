"""``Context``: the public class, assembled from the features built on ``ContextCore``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._batch import BatchMixin
from ._chat.mixin import ChatMixin
from ._context_knobs import default_threads
from ._context_lora import LoraMixin
from ._control_vector import ControlVectorMixin
from ._embeddings import POOLING as _POOLING
from ._embeddings import POOLING_NAMES as _POOLING_NAMES
from ._embeddings import EmbeddingsMixin
from ._errors import ConfigError
from ._native.context import ContextHandle
from ._positions import learned_positions
from ._rerank import RerankMixin
from ._sampling import check_seed
from ._state import StateMixin

if TYPE_CHECKING:
    from ._model import Model

__all__ = ["Context"]

_MAX_SEQUENCES = 256  # LLAMA_MAX_SEQ


def _positive(name: str, value: Any) -> int:
    # llama.cpp keeps these in (u)int32 fields: a larger value would be an OverflowError
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        raise ConfigError(f"{name} must be a positive integer below 2**31, got {value!r}",
                          key=name)
    return value


class Context(ChatMixin, StateMixin, LoraMixin, EmbeddingsMixin, BatchMixin, ControlVectorMixin,
              RerankMixin):
    """Evaluation state (KV cache, threads, batch sizes) over a ``Model``.

    Made by ``Model.new_context()``. One context serves one thread at a time: calls from
    a second thread wait for the first to finish. Consecutive ``generate`` calls reuse
    the part of the KV cache that the new prompt shares with what was evaluated before.
    """

    # Each base is a feature built on ContextCore (docs/architecture.md, "The Context
    # core"); ChatMixin builds on Generation (generate, stream).

    @classmethod
    def _create(cls, model: Model, *, n_ctx: int | None, n_batch: int, n_ubatch: int,
                n_threads: int | None, n_threads_batch: int | None, embeddings: bool,
                seed: int | None, pooling: str | None, n_seq_max: int = 1,
                kv_unified: bool | None = None,
                knobs: Mapping[str, Any] | None = None) -> Context:
        info = model.info
        if n_ctx is None:
            n_ctx = min(info.n_ctx_train, 4096) if info.n_ctx_train > 0 else 4096
        _positive("n_ctx", n_ctx)
        _positive("n_batch", n_batch)
        _positive("n_ubatch", n_ubatch)
        cpus = default_threads()
        n_threads = _positive("n_threads", cpus if n_threads is None else n_threads)
        n_threads_batch = _positive(
            "n_threads_batch", n_threads if n_threads_batch is None else n_threads_batch)
        if not isinstance(embeddings, bool):
            raise ConfigError(f"embeddings must be True or False, got {embeddings!r}",
                              key="embeddings")
        if pooling not in _POOLING:
            raise ConfigError(f"pooling must be one of {sorted(k for k in _POOLING if k)} or "
                              f"None, got {pooling!r}", key="pooling")
        check_seed(seed)
        _positive("n_seq_max", n_seq_max)
        if n_seq_max > _MAX_SEQUENCES:
            raise ConfigError(f"n_seq_max must be at most {_MAX_SEQUENCES} (llama.cpp's limit), "
                              f"got {n_seq_max}", key="n_seq_max")
        if n_seq_max > n_batch:
            # llama.cpp reserves an output row per sequence within n_batch, and asserts.
            raise ConfigError(f"n_seq_max={n_seq_max} must not exceed n_batch={n_batch}",
                              key="n_seq_max")
        if kv_unified is None:
            kv_unified = embeddings
        elif not isinstance(kv_unified, bool):
            raise ConfigError(f"kv_unified must be True, False or None, got {kv_unified!r}",
                              key="kv_unified")
        handle = ContextHandle(
            model._handle, n_ctx=n_ctx, n_batch=n_batch, n_ubatch=min(n_ubatch, n_batch),
            n_seq_max=_positive("n_seq_max", n_seq_max), n_threads=n_threads,
            n_threads_batch=n_threads_batch,
            embeddings=embeddings, pooling_type=_POOLING[pooling], kv_unified=kv_unified,
            knobs=knobs, max_positions=learned_positions(model))
        return cls(model, handle, seed=seed, n_threads=n_threads,
                   n_threads_batch=n_threads_batch)

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
