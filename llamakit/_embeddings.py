"""``Context.embeddings``: texts packed into as few decode calls as the batch allows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ._context_core import ContextCore
from ._errors import ConfigError, ContextError, ContextOverflowError, EmptyPromptError
from ._native.batch import BatchHandle
from ._positions import learned_positions

__all__ = ["EmbeddingsMixin", "POOLING", "POOLING_NAMES"]

POOLING = {None: -1, "none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}
POOLING_NAMES = {v: k for k, v in POOLING.items() if k is not None}


def _pool(rows: npt.NDArray[np.float32], method: str) -> npt.NDArray[np.float32]:
    pooled = rows.mean(axis=0) if method == "mean" else rows[0] if method == "cls" else rows[-1]
    return np.asarray(pooled, dtype=np.float32)


class EmbeddingsMixin(ContextCore):
    """The embeddings method of ``Context``."""

    def _group_texts(self, token_lists: list[list[int]], limit: int) -> list[list[int]]:
        """Indices of texts grouped so each group fits one decode call."""
        groups: list[list[int]] = []
        current: list[int] = []
        used = 0
        for index, tokens in enumerate(token_lists):
            if current and (used + len(tokens) > limit
                            or len(current) >= self._handle.n_seq_max):
                groups.append(current)
                current, used = [], 0
            current.append(index)
            used += len(tokens)
        if current:
            groups.append(current)
        return groups

    def embeddings(self, text_or_texts: str | Sequence[str], *, pooling: str | None = None,
                   normalize: bool = True) -> npt.NDArray[np.float32]:
        """Embedding of a text (1-D, ``n_embd``) or of each text in a list (2-D).

        The context must be made with ``embeddings=True``. ``pooling`` (``"mean"``,
        ``"cls"``, ``"last"``) applies when the model itself does not pool; a model that
        pools uses its own method. ``normalize`` scales each vector to unit L2 norm.
        Several texts share one decode call when they fit ``n_batch`` and the context has
        room for that many sequences (``new_context(n_seq_max=...)``).
        """
        handle = self._handle
        if not handle.embeddings:
            raise ContextError("this context was created without embeddings=True; use "
                               "model.new_context(embeddings=True) for embeddings")
        single = isinstance(text_or_texts, str)
        texts = [text_or_texts] if single else list(text_or_texts)
        if not texts:
            raise EmptyPromptError("no texts to embed")
        native_pooling = POOLING_NAMES.get(handle.pooling_type, "none")
        if native_pooling == "rank":
            # A rank context's pooled output is the classifier's scores (n_cls_out values),
            # not n_embd: reading a vector would run past llama.cpp's buffer.
            raise ContextError("this context pools with 'rank' (a reranker): use "
                               "rerank(query, documents), or new_context(embeddings=True, "
                               "pooling='cls') for the encoder's vectors")
        if pooling is not None and pooling not in ("mean", "cls", "last"):
            raise ConfigError(f"pooling must be 'mean', 'cls' or 'last', got {pooling!r}",
                              key="pooling")
        if native_pooling != "none" and pooling not in (None, native_pooling):
            raise ContextError(f"this context pools with {native_pooling!r}; create it with "
                               f"new_context(embeddings=True, pooling={pooling!r}) instead")
        encode = self.model.has_encoder and not self.model.has_decoder
        # A non-causal model must see a whole batch within one micro-batch.
        limit = min(handle.n_batch, handle.n_ubatch) if encode or not handle.causal \
            else handle.n_batch
        per_sequence = handle.n_ctx_seq
        positions = learned_positions(self.model)  # past its table, ggml would abort
        if positions is not None:
            per_sequence = min(per_sequence, positions)
        if handle.kv_unified:  # the texts of a group share the one KV buffer
            limit = min(limit, handle.n_ctx)
        token_lists = []
        for text in texts:
            if not isinstance(text, str):
                raise ConfigError(f"texts must be str, got {type(text).__name__}")
            tokens = self.model.tokenize(text, add_special=True, parse_special=False)
            if not tokens:
                raise EmptyPromptError(f"text {text!r} has no tokens to embed")
            if len(tokens) > min(limit, per_sequence):
                raise ContextOverflowError(len(tokens), min(limit, per_sequence),
                                           what="text to embed")
            token_lists.append(tokens)
        n_embd = self.model.info.n_embd
        vectors: list[npt.NDArray[np.float32]] = [np.empty(0, np.float32)] * len(texts)
        with self._lock:
            handle.set_abort(False)
            self._cache.clear()
            batch = BatchHandle(handle.native, limit)
            try:
                for group in self._group_texts(token_lists, limit):
                    batch.clear()
                    rows: dict[int, list[int]] = {}
                    for seq_id, index in enumerate(group):
                        rows[index] = [batch.add(token, pos, seq_id, True)
                                       for pos, token in enumerate(token_lists[index])]
                    try:
                        batch.decode(handle, encode=encode)
                        # Read every output before the cache is cleared (clearing can run on
                        # another GPU queue than the computation).
                        for seq_id, index in enumerate(group):
                            if native_pooling != "none":
                                vector = handle.sequence_embedding(seq_id, n_embd)
                                if vector is None:
                                    raise ContextError("llama.cpp returned no pooled embedding")
                            else:
                                matrix = np.stack([handle.token_embedding(i, n_embd)
                                                   for i in rows[index]])
                                vector = _pool(matrix, pooling or "mean")
                            vectors[index] = vector
                    finally:
                        handle.clear_memory()
            finally:
                batch.close()
        if normalize:
            for i, vector in enumerate(vectors):
                norm = float(np.linalg.norm(vector))
                if norm > 0:
                    vectors[i] = (vector / norm).astype(np.float32)
        return vectors[0] if single else np.stack(vectors)
