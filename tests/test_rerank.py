"""Reranking with a synthetic BERT reranker, checked against a numpy forward pass of the
same weights (written here from the BERT and rank-pooling definitions, not llama.cpp's)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

import llamakit
from llamakit._rerank import pair_tokens
from llamakit.testing import write_reranker_model

QUERY = "what is a panda?"
DOCUMENTS = ["hi", "The giant panda is a bear species endemic to China.",
             "pandas is a python library for data analysis", "bamboo forests", "panda"]


@pytest.fixture(scope="module")
def reranker_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_reranker_model(tmp_path_factory.mktemp("rerank") / "reranker.gguf", seed=3)


@pytest.fixture(scope="module")
def reranker(reranker_path: Path) -> Iterator[llamakit.Model]:
    with llamakit.load_model(reranker_path, backend="cpu") as model:
        yield model


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def reference_score(path: Path, tokens: list[int], n_head: int = 2) -> float:
    """BERT encoder (post-norm), first-token pooling, tanh head, output projection."""
    w = {t.name: np.asarray(t.data, dtype=np.float64).reshape(
        [int(d) for d in reversed(t.shape)]) for t in GGUFReader(path).tensors}
    n = len(tokens)
    x = w["token_embd.weight"][tokens] + w["token_types.weight"][0] \
        + w["position_embd.weight"][:n]
    x = _layer_norm(x, w["token_embd_norm.weight"], w["token_embd_norm.bias"])
    layer = 0
    while f"blk.{layer}.attn_q.weight" in w:
        b = f"blk.{layer}."

        def linear(name: str, h: np.ndarray, b: str = b) -> np.ndarray:
            return h @ w[f"{b}{name}.weight"].T + w[f"{b}{name}.bias"]

        q, k, v = (linear(p, x) for p in ("attn_q", "attn_k", "attn_v"))
        d = q.shape[-1] // n_head
        heads = []
        for h in range(n_head):
            part = slice(h * d, (h + 1) * d)
            scores = q[:, part] @ k[:, part].T / np.sqrt(d)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            heads.append(scores / scores.sum(-1, keepdims=True) @ v[:, part])
        x = _layer_norm(linear("attn_output", np.concatenate(heads, -1)) + x,
                        w[b + "attn_output_norm.weight"], w[b + "attn_output_norm.bias"])
        x = _layer_norm(linear("ffn_down", _gelu(linear("ffn_up", x))) + x,
                        w[b + "layer_output_norm.weight"], w[b + "layer_output_norm.bias"])
        layer += 1
    pooled = np.tanh(w["cls.weight"] @ x[0] + w["cls.bias"])
    return float((w["cls.output.weight"] @ pooled + w["cls.output.bias"])[0])


def test_scores_match_a_numpy_forward_pass(reranker: llamakit.Model,
                                           reranker_path: Path) -> None:
    """Each score equals an independent numpy forward pass of the pair, in document order;
    the ranking sorts them, best first."""
    with reranker.new_context(embeddings=True, n_ctx=512, n_seq_max=8) as ctx:
        result = ctx.rerank(QUERY, DOCUMENTS)
    expected = [reference_score(reranker_path, pair_tokens(reranker, QUERY, d))
                for d in DOCUMENTS]
    np.testing.assert_allclose(result.scores, expected, atol=2e-3)
    assert len(set(np.round(expected, 3))) == len(DOCUMENTS)  # the test can tell them apart
    assert result.ranking == sorted(range(len(DOCUMENTS)), key=lambda i: -expected[i])


def test_pairs_are_built_as_llama_cpp_server_builds_them(reranker: llamakit.Model) -> None:
    """[CLS] query [SEP] document for a WordPiece vocabulary (adds BOS and SEP, no EOS)."""
    tokens = pair_tokens(reranker, "a b", "c")
    query = reranker.tokenize("a b", add_special=False)
    document = reranker.tokenize("c", add_special=False)
    assert tokens == [101, *query, 102, *document]


def test_packed_and_single_decodes_agree_and_top_n_cuts(reranker: llamakit.Model) -> None:
    """Pairs packed into one decode score as one pair per decode does; top_n keeps the best."""
    with reranker.new_context(embeddings=True, n_ctx=512, n_seq_max=8) as ctx:
        packed = ctx.rerank(QUERY, DOCUMENTS)
    with reranker.new_context(embeddings=True, n_ctx=128) as ctx:
        single = ctx.rerank(QUERY, DOCUMENTS, top_n=2)
        again = ctx.rerank(QUERY, DOCUMENTS[::-1])
    np.testing.assert_allclose(packed.scores, single.scores, atol=1e-5)
    assert single.ranking == packed.ranking[:2]
    np.testing.assert_allclose(again.scores, packed.scores[::-1], atol=1e-5)
    best = single.top(DOCUMENTS)[0]
    assert best == (packed.ranking[0], single.scores[packed.ranking[0]],
                    DOCUMENTS[packed.ranking[0]])


def test_rerank_template_of_the_model_is_used(tmp_path: Path) -> None:
    """A GGUF with tokenizer.chat_template.rerank formats pairs with it."""
    path = write_reranker_model(tmp_path / "t.gguf", seed=3,
                                rerank_template="[CLS]{query} vs {document}[SEP]")
    with llamakit.load_model(path, backend="cpu") as model:
        assert pair_tokens(model, "a", "b") == model.tokenize("[CLS]a vs b[SEP]",
                                                               add_special=False,
                                                               parse_special=True)


def test_misuse_is_a_typed_error(reranker: llamakit.Model, tiny_model_path: Path) -> None:
    """No embeddings, a model that does not rank, too long a pair, no documents, a bad
    top_n: typed errors before any decode."""
    with reranker.new_context(n_ctx=128) as ctx, \
            pytest.raises(llamakit.ContextError, match="embeddings=True"):
        ctx.rerank(QUERY, DOCUMENTS)
    with llamakit.load_model(tiny_model_path, backend="cpu") as model, \
            model.new_context(embeddings=True, n_ctx=128) as ctx, \
            pytest.raises(llamakit.ContextError, match="pooling_type rank"):
        ctx.rerank(QUERY, DOCUMENTS)
    with reranker.new_context(embeddings=True, n_ctx=128) as ctx:
        # 256 positions in the context, but 128 rows of learned position embeddings:
        # ggml would abort past them.
        with pytest.raises(llamakit.ContextOverflowError, match="128"):
            ctx.rerank(QUERY, ["panda " * 200])
        with pytest.raises(llamakit.ContextError, match="use rerank"):
            ctx.embeddings("panda")
        with pytest.raises(llamakit.EmptyPromptError):
            ctx.rerank(QUERY, [])
        with pytest.raises(llamakit.ConfigError, match="top_n"):
            ctx.rerank(QUERY, DOCUMENTS, top_n=0)
        with pytest.raises(llamakit.ConfigError, match="list of str"):
            ctx.rerank(QUERY, "one document")  # type: ignore[arg-type]
    with reranker.new_context(embeddings=True, n_ctx=128, pooling="cls") as ctx:
        assert ctx.embeddings("panda").shape == (32,)
        with pytest.raises(llamakit.ContextOverflowError, match="128"):
            ctx.embeddings("panda " * 200)


def test_cli_rerank_prints_the_ranking(reranker_path: Path, reranker: llamakit.Model) -> None:
    """llamakit rerank MODEL QUERY DOC... prints the documents best first with their
    scores; --json gives scores in document order and the ranking."""
    with reranker.new_context(embeddings=True, n_ctx=512, n_seq_max=8) as ctx:
        expected = ctx.rerank(QUERY, DOCUMENTS[:3])
    base = [sys.executable, "-m", "llamakit", "rerank", str(reranker_path), QUERY,
            *DOCUMENTS[:3], "--backend", "cpu"]
    proc = subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    np.testing.assert_allclose(report["scores"], expected.scores, atol=1e-5)
    assert report["ranking"] == expected.ranking
    text = subprocess.run([*base, "--top-n", "1"], capture_output=True, text=True,
                          timeout=120)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.strip().splitlines()
    best = expected.ranking[0]
    assert lines == [f"{expected.scores[best]:.4f}\t{best}\t{DOCUMENTS[best]}"]


def test_context_positions_stop_at_the_learned_table(reranker: llamakit.Model) -> None:
    """A model with 128 learned positions gets a context of at most 128 usable positions,
    whatever n_ctx llama.cpp pads to (past the table ggml would abort)."""
    with reranker.new_context(embeddings=True, n_ctx=512) as ctx:
        assert ctx.n_ctx == 128
    with reranker.new_context(embeddings=True, n_ctx=64) as ctx:
        assert ctx.n_ctx == 128  # llama.cpp pads 64 to 256; the table still bounds it
