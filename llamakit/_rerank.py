"""``Context.rerank``: scores of documents against a query with a reranking model
(``pooling_type = rank``: BGE-reranker style cross-encoders, Qwen3 rerankers, ...).

Each (query, document) pair is one sequence, built as llama.cpp's server builds it
(``format_prompt_rerank``): the model's ``rerank`` chat template with ``{query}`` and
``{document}`` filled in when the GGUF has one, else ``BOS query EOS SEP document EOS``
with each special token only where the vocabulary adds it. The score is the first output
of the model's classification head, as llama.cpp's ``/rerank`` reports it (a logit, not a
probability; Qwen3 rerankers apply their softmax in the graph).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._context_core import ContextCore
from ._embeddings import POOLING_NAMES
from ._errors import ConfigError, ContextError, ContextOverflowError, EmptyPromptError
from ._native.batch import BatchHandle
from ._native.rerank import classifier_labels, pair_markers
from ._positions import learned_positions

if TYPE_CHECKING:
    from ._model import Model

__all__ = ["RerankMixin", "RerankResult", "pair_tokens"]


@dataclass(frozen=True)
class RerankResult:
    """Scores of documents against a query."""

    scores: list[float]
    """One score per document, in the order the documents were given; higher is better."""
    ranking: list[int]
    """Indices of the documents, best first (the ``top_n`` best when it is given)."""

    def top(self, documents: Sequence[str]) -> list[tuple[int, float, str]]:
        """``(index, score, document)`` of the ranked documents, best first."""
        return [(i, self.scores[i], documents[i]) for i in self.ranking]


def pair_tokens(model: Model, query: str, document: str) -> list[int]:
    """The tokens of one (query, document) pair, as llama.cpp's server makes them."""
    template = model.chat_template("rerank")
    if template is not None:
        prompt = template.replace("{query}", query).replace("{document}", document)
        return model.tokenize(prompt, add_special=False, parse_special=True)
    bos, eos, sep = pair_markers(model._handle)
    tokens = [] if bos is None else [bos]
    tokens += model.tokenize(query, add_special=False)
    tokens += [] if eos is None else [eos]
    tokens += [] if sep is None else [sep]
    tokens += model.tokenize(document, add_special=False)
    tokens += [] if eos is None else [eos]
    return tokens


def _groups(token_lists: list[list[int]], limit: int, n_seq_max: int) -> list[list[int]]:
    """Indices of the pairs, grouped so that each group fits one decode call."""
    groups: list[list[int]] = [[]]
    used = 0
    for index, tokens in enumerate(token_lists):
        if groups[-1] and (used + len(tokens) > limit or len(groups[-1]) >= n_seq_max):
            groups.append([])
            used = 0
        groups[-1].append(index)
        used += len(tokens)
    return groups


class RerankMixin(ContextCore):
    """The rerank method of ``Context`` (built on ``ContextCore``)."""

    def rerank(self, query: str, documents: Sequence[str], *,
               top_n: int | None = None) -> RerankResult:
        """Score each document against ``query`` with a reranking model.

        The context must be made with ``embeddings=True`` over a model whose pooling is
        ``rank`` (or with ``pooling="rank"``). Returns the scores in document order and the
        document indices best first (only the ``top_n`` best when given). Several pairs
        share one decode call when they fit ``n_batch`` and ``n_seq_max``.
        """
        handle = self._handle
        if not handle.embeddings or POOLING_NAMES.get(handle.pooling_type) != "rank":
            raise ContextError(
                "rerank() needs a reranking model (pooling_type rank) and a context made "
                "with model.new_context(embeddings=True); this context pools with "
                f"{POOLING_NAMES.get(handle.pooling_type, 'none')!r}"
                f"{'' if handle.embeddings else ' and has no embeddings'}")
        if not isinstance(query, str):
            raise ConfigError(f"query must be str, got {type(query).__name__}", key="query")
        if isinstance(documents, str) or not isinstance(documents, Sequence):
            raise ConfigError("documents must be a list of str", key="documents")
        if not documents:
            raise EmptyPromptError("no documents to rerank")
        if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int)
                                  or top_n < 1):
            raise ConfigError(f"top_n must be a positive integer or None, got {top_n!r}",
                              key="top_n")
        labels = classifier_labels(self.model._handle)
        if not labels:
            raise ContextError("this model has no classification head (n_cls_out = 0)")
        encode = self.model.has_encoder and not self.model.has_decoder
        limit = min(handle.n_batch, handle.n_ubatch) if encode or not handle.causal \
            else handle.n_batch
        if handle.kv_unified:
            limit = min(limit, handle.n_ctx)
        longest = min(limit, handle.n_ctx_seq)
        positions = learned_positions(self.model)
        if positions is not None:
            longest = min(longest, positions)
        token_lists = []
        for document in documents:
            if not isinstance(document, str):
                raise ConfigError(f"documents must be str, got {type(document).__name__}",
                                  key="documents")
            tokens = pair_tokens(self.model, query, document)
            if len(tokens) > longest:
                raise ContextOverflowError(len(tokens), longest, what="query and document")
            token_lists.append(tokens)
        scores = [0.0] * len(documents)
        with self._lock:
            handle.set_abort(False)
            self._cache.clear()
            batch = BatchHandle(handle.native, limit)
            try:
                for group in _groups(token_lists, limit, handle.n_seq_max):
                    batch.clear()
                    for seq_id, index in enumerate(group):
                        for pos, token in enumerate(token_lists[index]):
                            batch.add(token, pos, seq_id, True)
                    try:
                        batch.decode(handle, encode=encode)
                        for seq_id, index in enumerate(group):
                            values = handle.sequence_embedding(seq_id, len(labels))
                            if values is None:
                                raise ContextError("llama.cpp returned no rerank score")
                            scores[index] = float(values[0])
                    finally:
                        handle.clear_memory()
            finally:
                batch.close()
        ranking = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        return RerankResult(scores=scores, ranking=ranking[:top_n])
