"""The ``no_repeat_ngram`` sampler: alone on candidates, and by name in a generation."""

from __future__ import annotations

import llamakit
import numpy as np
import pytest
from llamakit import Candidates

from llamakit_example_plugin import NoRepeatNgram

PROMPT = "Once upon a time"


def repeated_ngrams(tokens: list[int], n: int, start: int) -> list[tuple[int, ...]]:
    """The n-grams ending at a position >= ``start`` that already occurred earlier."""
    seen: set[tuple[int, ...]] = set()
    repeats = []
    for end in range(n, len(tokens) + 1):
        gram = tuple(tokens[end - n:end])
        if gram in seen and end - 1 >= start:
            repeats.append(gram)
        seen.add(gram)
    return repeats


def test_bans_the_token_that_would_repeat_a_bigram() -> None:
    sampler = NoRepeatNgram(2)
    for token in (1, 2, 3, 1):  # the last token is 1, and 1 was once followed by 2
        sampler.accept(token)
    candidates = Candidates.from_logits(np.arange(5, dtype=np.float32))
    sampler.apply(candidates)
    assert candidates.logits[2] == -np.inf
    assert np.isfinite(np.delete(candidates.logits, 2)).all()
    sampler.reset()
    fresh = Candidates.from_logits(np.arange(5, dtype=np.float32))
    sampler.apply(fresh)
    assert np.isfinite(fresh.logits).all()


def test_unigram_bans_every_seen_token_but_never_all() -> None:
    sampler = NoRepeatNgram(1)
    for token in (0, 3):
        sampler.accept(token)
    candidates = Candidates.from_logits(np.zeros(4, dtype=np.float32))
    sampler.apply(candidates)
    assert list(np.isfinite(candidates.logits)) == [False, True, True, False]
    for token in (1, 2):
        sampler.accept(token)
    everything_banned = Candidates.from_logits(np.zeros(4, dtype=np.float32))
    sampler.apply(everything_banned)
    assert np.isfinite(everything_banned.logits).all()


def test_clone_copies_the_history() -> None:
    sampler = NoRepeatNgram(2)
    for token in (4, 5, 4):
        sampler.accept(token)
    copy = sampler.clone()
    sampler.reset()
    assert copy.banned() == {5} and sampler.banned() == set()


def test_generation_with_the_sampler_repeats_no_ngram(ctx: llamakit.Context) -> None:
    """Greedy decoding of the random-weight model loops; with the stage it cannot."""
    plain = ctx.generate(PROMPT, max_new_tokens=40, temperature=0)
    start = len(plain.prompt_tokens)
    assert repeated_ngrams(plain.prompt_tokens + plain.tokens, 2, start)  # the control
    ctx.reset()
    banned = ctx.generate(PROMPT, max_new_tokens=40, temperature=0,
                          samplers=[("no_repeat_ngram", {"n": 2})])
    assert len(banned.tokens) == 40
    assert repeated_ngrams(banned.prompt_tokens + banned.tokens, 2, start) == []


def test_sampler_chain_add_by_name(model: llamakit.Model) -> None:
    with llamakit.SamplerChain(model) as chain:
        chain.add("no_repeat_ngram", n=3).add("greedy")
        assert chain.stages == ["no_repeat_ngram", "greedy"]


def test_bad_parameter_names_the_sampler(ctx: llamakit.Context) -> None:
    with pytest.raises(llamakit.SamplerError, match="no_repeat_ngram.*llamakit-example-plugin"):
        ctx.generate(PROMPT, max_new_tokens=4, samplers=[("no_repeat_ngram", {"n": 0})])
