"""What reranking needs of a model beyond ``ModelHandle``: its classifier outputs and the
special tokens llama.cpp puts around a query and a document."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .handle import pinned

if TYPE_CHECKING:
    from .model import ModelHandle

__all__ = ["classifier_labels", "pair_markers"]


@pinned
def classifier_labels(model: ModelHandle) -> list[str]:
    """The labels of the model's classification head (``n_cls_out`` of them; a reranker
    has one, whose output is the score)."""
    lib, ffi, ptr = model.lib, model.ffi, model.ptr
    labels = []
    for i in range(int(lib.llama_model_n_cls_out(ptr))):
        raw = lib.llama_model_cls_label(ptr, i)
        labels.append("" if raw == ffi.NULL else ffi.string(raw).decode("utf-8", "replace"))
    return labels


@pinned
def pair_markers(model: ModelHandle) -> tuple[int | None, int | None, int | None]:
    """``(bos, eos, sep)``: the tokens llama.cpp's server puts before the query, after the
    query and the document, and between them (each None when the vocabulary adds none)."""
    lib, vocab = model.lib, model.vocab

    def token(value: int) -> int | None:
        return None if value < 0 else int(value)

    eos = token(lib.llama_vocab_eos(vocab))
    if eos is None:
        eos = token(lib.llama_vocab_sep(vocab))
    return (token(lib.llama_vocab_bos(vocab)) if lib.llama_vocab_get_add_bos(vocab) else None,
            eos if lib.llama_vocab_get_add_eos(vocab) else None,
            token(lib.llama_vocab_sep(vocab)) if lib.llama_vocab_get_add_sep(vocab) else None)
