"""generate's own host work: the prompt's token check, the spare chain kept between
calls, a chain that takes no history. Each shortcut must leave the results as they were."""

from __future__ import annotations

import numpy as np
import pytest

import llamakit
from llamakit._native.sampler import SamplerHandle

PROMPT = [5, 17, 9, 42, 7, 3, 11]


def test_check_tokens_gives_python_ints(model: llamakit.Model) -> None:
    """Numpy and Python integers alike come back as Python ints, in order."""
    handle = model._handle
    given = [np.int32(5), 17, np.uint16(9), np.int64(model.n_vocab - 1)]
    checked = handle.check_tokens(given)
    assert checked == [5, 17, 9, model.n_vocab - 1]
    assert all(type(t) is int for t in checked)
    assert handle.check_tokens(np.arange(3, dtype=np.int8)) == [0, 1, 2]


@pytest.mark.parametrize("bad", [[1, -3, 2], [1, 2, 10**6], [2**40]])
def test_check_tokens_names_the_first_bad_id(model: llamakit.Model, bad: list[int]) -> None:
    """The error names the first out-of-range id (min/max only decides whether to look)."""
    first = next(t for t in bad if not 0 <= t < model.n_vocab)
    with pytest.raises(llamakit.InvalidTokenError) as info:
        model._handle.check_tokens([*bad, -1])
    assert str(first) in str(info.value)


@pytest.mark.parametrize("bad", [[True, False], [1.0, 2], ["3"], [[1, 2]], [2**70]])
def test_check_tokens_rejects_non_integers(model: llamakit.Model, bad: list[object]) -> None:
    with pytest.raises(llamakit.TokenizeError):
        model._handle.check_tokens(bad)  # type: ignore[arg-type]


def test_takes_history_follows_the_stages(model: llamakit.Model) -> None:
    """Only stages whose accept does nothing let accept_history skip the prompt."""
    handle = SamplerHandle.new(model._handle)
    try:
        handle.add("top_k", {"k": 5})
        handle.add("greedy", {})
        assert not handle.takes_history
        assert not handle.clone().takes_history
        handle.add("penalties", {"penalty_last_n": 8, "penalty_repeat": 1.5,
                                 "penalty_freq": 0.0, "penalty_present": 0.0})
        assert handle.takes_history and handle.clone().takes_history
    finally:
        handle.close()
    chain = llamakit.SamplerChain(model).add_dist(seed=1)
    try:
        assert chain._handle.takes_history  # dist accepts (its backend draws)
    finally:
        chain.close()


def test_greedy_call_reuses_the_previous_chain(ctx: llamakit.Context) -> None:
    first = ctx.generate(PROMPT, max_new_tokens=6, temperature=0)
    assert ctx._spare is not None
    spare = ctx._spare[1]
    second = ctx.generate(PROMPT, max_new_tokens=6, temperature=0)
    assert ctx._spare[1] is spare and not spare.closed
    assert first.tokens == second.tokens and first.text == second.text
    ctx.generate(PROMPT, max_new_tokens=2, temperature=0.7, seed=3)  # other settings
    assert spare.closed and ctx._spare[1] is not spare


@pytest.mark.parametrize("settings", [
    {"temperature": 0.9, "seed": 11},
    {"temperature": 0.9, "seed": 11, "repeat_penalty": 1.6, "repeat_last_n": 16},
    {"temperature": 0.9, "seed": 11, "mirostat": 2},
    {"temperature": 0.9, "seed": 11, "xtc_probability": 0.5, "xtc_threshold": 0.01},
])
def test_reused_chain_samples_as_a_fresh_one(model: llamakit.Model,
                                             settings: dict[str, object]) -> None:
    """A reused chain is reset to its seeds and empty histories: every call on one context
    gives what the first call on a new context gives."""
    with model.new_context(n_ctx=128) as fresh:
        expected = fresh.generate(PROMPT, max_new_tokens=10, **settings).tokens  # type: ignore[arg-type]
    with model.new_context(n_ctx=128) as ctx:
        got = [ctx.generate(PROMPT, max_new_tokens=10, **settings).tokens  # type: ignore[arg-type]
               for _ in range(3)]
        assert ctx._spare is not None
    assert got == [expected] * 3


def test_grammar_chains_are_not_kept(ctx: llamakit.Context) -> None:
    ctx.generate(PROMPT, max_new_tokens=3, temperature=0, grammar='root ::= "a"+')
    assert ctx._spare is None


def test_closing_the_context_frees_the_spare(model: llamakit.Model) -> None:
    ctx = model.new_context(n_ctx=64)
    ctx.generate(PROMPT, max_new_tokens=2, temperature=0)
    assert ctx._spare is not None
    spare = ctx._spare[1]
    ctx.close()
    assert spare.closed and ctx._spare is None


def test_failed_call_does_not_keep_its_chain(model: llamakit.Model) -> None:
    """A call that ends in an error frees its chain instead of keeping it."""
    with model.new_context(n_ctx=64, n_batch=64, n_threads=2) as ctx:
        with pytest.raises(llamakit.ContextOverflowError):
            ctx.generate("Hello world", max_new_tokens=ctx.n_ctx * 2, temperature=0)
        assert ctx._spare is None
        ctx.generate("Hello world", max_new_tokens=4, temperature=0)
        assert ctx._spare is not None


def _reference_prefix(old: list[int], new: list[int] | tuple[int, ...]) -> int:
    common = 0
    for a, b in zip(old, new, strict=False):
        if a != b:
            break
        common += 1
    return common


def test_common_prefix_matches_a_token_by_token_walk() -> None:
    import random

    from llamakit._prompt_cache import common_prefix

    rng = random.Random(5)
    for n in (0, 1, 255, 256, 257, 600, 1030):
        old = [rng.randrange(50) for _ in range(n)]
        cases: list[list[int] | tuple[int, ...]] = [list(old), old + [1, 2], old[:n // 2], []]
        for where in {0, n // 3, max(n - 1, 0), 256, 511} & set(range(n)):
            changed = list(old)
            changed[where] += 1
            cases += [changed, changed[:where + 1], tuple(changed)]
        cases.append(tuple(old))
        for new in cases:
            assert common_prefix(old, new) == _reference_prefix(old, new), (n, new[:3])


def test_continued_prompt_reuses_the_shared_prefix(model: llamakit.Model) -> None:
    """A prompt that extends the last one reuses all of it; one that differs inside a
    block reuses up to the difference (before alignment rules, ``deterministic=False``)."""
    prompt = [(7 * i) % 900 + 50 for i in range(300)]
    with model.new_context(n_ctx=512, n_batch=512, deterministic=False) as ctx:
        ctx.generate(prompt, max_new_tokens=1, temperature=0)
        longer = ctx.generate(prompt + [60, 61], max_new_tokens=1, temperature=0)
        assert longer.timings.prompt_tokens_cached == 300
        edited = list(prompt)
        edited[270] += 1
        again = ctx.generate(edited, max_new_tokens=1, temperature=0)
        assert again.timings.prompt_tokens_cached == 270
