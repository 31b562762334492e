"""A synthetic BERT-style reranker: ``pooling_type = rank`` with a classification head.

llama.cpp's ``bert`` architecture pools a reranker's first token (CLS), runs the head
``tanh(cls @ x + cls_b)`` and projects it with ``cls.output`` to one score per label
(``llama-graph.cpp``, ``build_pooling``, ``LLAMA_POOLING_TYPE_RANK``). The tokenizer is
llama.cpp's ``bert-bge`` vocab (WordPiece, CLS/SEP); the weights are random, so the scores
mean nothing, but every step of the graph runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
from gguf import GGUFReader, GGUFValueType, GGUFWriter

from ._synthetic import _resolve_vocab

__all__ = ["write_reranker_model"]


def _tokenizer_fields(vocab: Path) -> list[tuple[str, object, GGUFValueType,
                                                  GGUFValueType | None]]:
    reader = GGUFReader(vocab)
    found = []
    for field in reader.fields.values():
        if not field.name.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        found.append((field.name, field.contents(), vtype, sub))
    return found


def write_reranker_model(path: str | os.PathLike[str], *, n_embd: int = 32, n_layer: int = 2,
                         n_head: int = 2, n_ff: int = 64, n_ctx_train: int = 128,
                         n_labels: int = 1, seed: int = 0,
                         vocab: str | os.PathLike[str] = "bert-bge",
                         rerank_template: str | None = None) -> Path:
    """Write a BERT-architecture reranker GGUF (F32, random weights, ``pooling_type`` rank).

    Args:
        path: where to write (parent folders are created).
        n_embd, n_layer, n_head, n_ff, n_ctx_train: the shape (``n_ctx_train`` is the
            number of learned positions, the longest query plus document).
        n_labels: outputs of ``cls.output`` (``classifier.output_labels``); the rerank
            score is the first.
        seed: seeds ``numpy.random.default_rng``; the same arguments give the same file.
        vocab: a WordPiece vocab of llama.cpp's ``models/`` (see :func:`vocab_path`).
        rerank_template: stored as ``tokenizer.chat_template.rerank`` (llama.cpp formats
            each pair with it, ``{query}`` and ``{document}`` filled in).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
    tokenizer = _tokenizer_fields(_resolve_vocab(vocab))
    n_vocab = next(len(value) for name, value, _, _ in tokenizer  # type: ignore[arg-type]
                   if name == "tokenizer.ggml.tokens")
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> npt.NDArray[np.float32]:
        values: npt.NDArray[np.float32] = rng.standard_normal(shape, dtype=np.float32)
        values *= np.float32(0.2)
        return values

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(target, arch="bert")
    writer.add_name("llamakit synthetic reranker (random weights)")
    writer.add_file_type(0)
    writer.add_context_length(n_ctx_train)
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(n_ff)
    writer.add_block_count(n_layer)
    writer.add_head_count(n_head)
    writer.add_layer_norm_eps(1e-12)
    writer.add_causal_attention(False)
    writer.add_uint32("bert.pooling_type", 4)  # LLAMA_POOLING_TYPE_RANK
    writer.add_array("bert.classifier.output_labels", [f"LABEL_{i}" for i in range(n_labels)])
    for name, value, vtype, sub in tokenizer:
        writer.add_key_value(name, value, vtype, sub_type=sub)
    if rerank_template is not None:
        writer.add_string("tokenizer.chat_template.rerank", rerank_template)

    def ones_and_bias(name: str) -> None:
        writer.add_tensor(f"{name}.weight", 1 + weight(n_embd))
        writer.add_tensor(f"{name}.bias", weight(n_embd))

    writer.add_tensor("token_embd.weight", weight(n_vocab, n_embd))
    writer.add_tensor("token_types.weight", weight(2, n_embd))
    writer.add_tensor("position_embd.weight", weight(n_ctx_train, n_embd))
    ones_and_bias("token_embd_norm")
    for i in range(n_layer):
        blk = f"blk.{i}"
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{blk}.{part}.weight", weight(n_embd, n_embd))
            writer.add_tensor(f"{blk}.{part}.bias", weight(n_embd))
        ones_and_bias(f"{blk}.attn_output_norm")
        writer.add_tensor(f"{blk}.ffn_up.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"{blk}.ffn_up.bias", weight(n_ff))
        writer.add_tensor(f"{blk}.ffn_down.weight", weight(n_embd, n_ff))
        writer.add_tensor(f"{blk}.ffn_down.bias", weight(n_embd))
        ones_and_bias(f"{blk}.layer_output_norm")
    writer.add_tensor("cls.weight", weight(n_embd, n_embd))
    writer.add_tensor("cls.bias", weight(n_embd))
    writer.add_tensor("cls.output.weight", weight(n_labels, n_embd))
    writer.add_tensor("cls.output.bias", weight(n_labels))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target
