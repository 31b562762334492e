"""Context.logits() and Context.eval(): raw scores as numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest

import llamakit


def test_eval_returns_the_last_tokens_logits(ctx: llamakit.Context) -> None:
    """eval() gives the next-token scores; logits() is a copy of the same row."""
    tokens = ctx.tokenize("The cat sat")
    last = ctx.eval(tokens)
    assert last.shape == (ctx.model.n_vocab,) and last.dtype == np.float32
    again = ctx.logits()
    assert np.array_equal(again, last)
    again[:] = 0  # a copy: the context's buffer is not touched
    assert np.array_equal(ctx.logits(), last)
    greedy = ctx.generate(tokens, max_new_tokens=1, temperature=0)
    assert greedy.tokens == [int(np.argmax(last))]


def test_all_logits_rows_match_evaluating_prefixes(model: llamakit.Model) -> None:
    """Row i of eval(all_logits=True) scores the token after tokens[i], over n_batch
    chunks too (n_batch=4 here), as evaluating tokens[:i+1] alone does."""
    with model.new_context(n_ctx=128, n_batch=4, n_threads=2) as ctx:
        tokens = ctx.tokenize("one two three four five six seven")
        rows = ctx.eval(tokens, all_logits=True)
        assert rows.shape == (len(tokens), model.n_vocab)
        for i in (0, 3, 4, len(tokens) - 1):
            ctx.reset()
            alone = ctx.eval(tokens[:i + 1])
            np.testing.assert_allclose(rows[i], alone, atol=1e-4, rtol=1e-4)


def test_eval_continues_and_generate_reuses_it(ctx: llamakit.Context) -> None:
    """eval() appends to what the context holds; generate() reuses that prefix."""
    first, rest = ctx.tokenize("Hello"), ctx.tokenize(" world", add_special=False)
    ctx.eval(first)
    continued = ctx.eval(rest)
    ctx.reset()
    whole = ctx.eval(first + rest)
    np.testing.assert_allclose(continued, whole, atol=1e-4, rtol=1e-4)
    # Unseeded sampling: not deterministic mode, which reuses only n_batch-aligned chunks.
    result = ctx.generate(first + rest, max_new_tokens=1, temperature=0.8)
    assert result.timings.prompt_tokens_cached == len(first + rest) - 1


def test_logits_rows_and_errors(ctx: llamakit.Context) -> None:
    """logits([...]) stacks rows; an output the decode did not keep is ContextError."""
    tokens = ctx.tokenize("a b c")
    rows = ctx.eval(tokens, all_logits=True)
    picked = ctx.logits([0, -1])
    assert np.array_equal(picked, rows[[0, -1]])
    ctx.reset()
    ctx.eval(tokens)
    with pytest.raises(llamakit.ContextError):
        ctx.logits(0)  # only the last token kept logits
    with pytest.raises(llamakit.ContextError):
        ctx.logits(["x"])  # type: ignore[list-item]


def test_eval_overflow_and_empty(model: llamakit.Model) -> None:
    """More tokens than n_ctx is ContextOverflowError; none is EmptyPromptError."""
    with model.new_context(n_ctx=16, n_batch=16, n_threads=2) as ctx:
        with pytest.raises(llamakit.ContextOverflowError):
            ctx.eval([1] * (ctx.n_ctx + 1))  # llama.cpp may round n_ctx up
        with pytest.raises(llamakit.EmptyPromptError):
            ctx.eval([])
        with pytest.raises(llamakit.InvalidTokenError):
            ctx.eval([model.n_vocab])


def test_embeddings_context_reports_the_pooling_it_applies(model: llamakit.Model) -> None:
    """A model without pooling: an embeddings context says "mean", and mean it is."""
    with model.new_context(embeddings=True, n_ctx=64, n_threads=2) as ectx:
        assert ectx.pooling == "mean"
        pooled = ectx.embeddings("Hello world", normalize=False)
        explicit = ectx.embeddings("Hello world", normalize=False, pooling="mean")
        assert np.array_equal(pooled, explicit)
    with model.new_context(n_ctx=64, n_threads=2) as plain:
        assert plain.pooling == "none"
