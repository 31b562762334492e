"""``sample_many`` on several threads gives exactly what it gives on one.

The shim spreads the chains of one decode over a pool of threads (native/lk_sampling_many.cpp)
when asked for more than one; every token, end-of-generation flag and piece must equal the
one-thread loop's, whatever the chains are (greedy, seeded, grammar, biased, mixed), and a
failing chain must raise the error of the lowest failing item, leaving the context usable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import pytest

import llamakit
from llamakit import SamplerChain
from llamakit._native.sampler import sample_many

Build = Callable[[llamakit.Model, int], SamplerChain]
GRAMMAR = 'root ::= [a-z ]+ "."'


def _greedy(model: llamakit.Model, seed: int) -> SamplerChain:
    return SamplerChain(model).add_greedy()


def _default(model: llamakit.Model, seed: int) -> SamplerChain:
    return (SamplerChain(model).add_top_k(40).add_top_p(0.95).add_min_p(0.05).add_temp(0.8)
            .add_dist(seed=seed))


def _grammar(model: llamakit.Model, seed: int) -> SamplerChain:
    return SamplerChain(model).add_grammar(GRAMMAR).add_top_k(40).add_temp(0.8).add_dist(seed=seed)


def _biased(model: llamakit.Model, seed: int) -> SamplerChain:
    bias = {7: -math.inf, 11 + seed: 3.0, 29: 1.5}
    return (SamplerChain(model).add_logit_bias(bias).add_top_k(40).add_top_p(0.9).add_temp(1.2)
            .add_dist(seed=seed))


def _biased_greedy(model: llamakit.Model, seed: int) -> SamplerChain:
    return SamplerChain(model).add_logit_bias({seed: 2.0, 3: -math.inf}).add_greedy()


def _penalised(model: llamakit.Model, seed: int) -> SamplerChain:
    return (SamplerChain(model).add_penalties(64, 1.3, 0.1, 0.1).add_top_k(20).add_temp(1.0)
            .add_dist(seed=seed))


KINDS: dict[str, list[Build]] = {
    "greedy": [_greedy],
    "default": [_default],
    "grammar": [_grammar],
    "logit_bias": [_biased],
    "mixed": [_greedy, _default, _grammar, _biased, _biased_greedy, _penalised],
}
OUTPUTS = 4  # tokens decoded with logits each step: item i samples output i % OUTPUTS


@pytest.fixture(params=["openmp", "pool"])
def threads(request: pytest.FixtureRequest, model: llamakit.Model) -> Iterator[str]:
    """Each test once on OpenMP's threads (a llama.cpp built with it) and once on the
    shim's own pool (what a build without OpenMP uses)."""
    lib = model._handle.lib
    before = bool(lib.lk_sampler_many_openmp(-1))
    if request.param == "openmp" and not before:
        pytest.skip("llama.cpp was built without OpenMP")
    lib.lk_sampler_many_openmp(int(request.param == "openmp"))
    try:
        yield request.param
    finally:
        lib.lk_sampler_many_openmp(int(before))


def _chains(model: llamakit.Model, builds: list[Build], n: int) -> list[SamplerChain]:
    return [builds[i % len(builds)](model, 1000 + i) for i in range(n)]


@pytest.mark.parametrize("n", [1, 3, 4, 8, 33])
@pytest.mark.parametrize("kind", list(KINDS))
def test_threads_give_the_sequential_result(model: llamakit.Model, kind: str, n: int,
                                            threads: str) -> None:
    """Twin chains over the same logits, one set sampled on one thread and one on two, for a
    few steps: tokens, flags and pieces (the special ones too) equal item for item."""
    with model.new_context(n_ctx=256, n_batch=64, n_threads=2) as ctx:
        handle = ctx._handle
        one, two = _chains(model, KINDS[kind], n), _chains(model, KINDS[kind], n)
        handle.decode(model.tokenize("Once upon a time there"), all_outputs=True)
        for step in range(3):
            outputs = [(i % OUTPUTS) - OUTPUTS for i in range(n)]  # the last OUTPUTS tokens
            special = step == 1
            want = sample_many(handle, [(c._handle, o) for c, o in zip(one, outputs, strict=True)],
                               special)
            got = sample_many(handle, [(c._handle, o) for c, o in zip(two, outputs, strict=True)],
                              special, n_threads=2)
            assert got == want
            fed = [token for token, _, _ in want[:OUTPUTS]]
            handle.decode(fed + [fed[0]] * (OUTPUTS - len(fed)), all_outputs=True)


def test_context_threads_are_used_by_default_none(model: llamakit.Model, threads: str) -> None:
    """``n_threads=None`` takes the context's thread count: same results again."""
    with model.new_context(n_ctx=256, n_batch=64, n_threads=2) as ctx:
        handle = ctx._handle
        one, two = _chains(model, [_default], 16), _chains(model, [_default], 16)
        handle.decode(model.tokenize("Hello there"))
        for _ in range(3):
            want = sample_many(handle, [(c._handle, -1) for c in one])
            assert sample_many(handle, [(c._handle, -1) for c in two], n_threads=None) == want
            handle.decode([want[0][0]])


def _selects_nothing(model: llamakit.Model, seed: int) -> SamplerChain:
    return SamplerChain(model).add_top_k(3)


@pytest.mark.parametrize("first", [0, 5, 7])
def test_the_lowest_failing_item_raises(model: llamakit.Model, first: int, threads: str) -> None:
    """Of two failing items (a chain that selects nothing, an output without logits) the
    lower one's error is raised; the context and the chains sample on afterwards."""
    with model.new_context(n_ctx=256, n_batch=64, n_threads=2) as ctx:
        handle = ctx._handle
        handle.decode(model.tokenize("Hello there"))
        chains = _chains(model, [_default], 8)
        for later, match in [(None, "selected no token"), (first + 1, "selected no token")]:
            items = [(c._handle, -1) for c in chains]
            items[first] = (_selects_nothing(model, 0)._handle, -1)
            if later is not None and later < 8:
                items[later] = (chains[later]._handle, 99)  # no such output
            with pytest.raises(llamakit.SamplerError, match=match):
                sample_many(handle, items, n_threads=2)
        items = [(c._handle, -1) for c in chains]
        items[first] = (chains[first]._handle, 99)
        if first + 1 < 8:
            items[first + 1] = (_selects_nothing(model, 0)._handle, -1)
        with pytest.raises(llamakit.SamplerError, match="no logits for output 99"):
            sample_many(handle, items, n_threads=2)
        # Usable afterwards: one and two threads agree again on fresh twins.
        one, two = _chains(model, [_default], 8), _chains(model, [_default], 8)
        want = sample_many(handle, [(c._handle, -1) for c in one])
        assert sample_many(handle, [(c._handle, -1) for c in two], n_threads=2) == want


def test_a_python_stage_raises_its_own_error(model: llamakit.Model, threads: str) -> None:
    """A chain with a Python stage keeps the whole call on the calling thread: its exception
    comes back unchanged, and the chains after it were not called."""
    class Boom:
        def apply(self, candidates: llamakit.Candidates) -> None:
            raise KeyError("boom")

    with model.new_context(n_ctx=256, n_batch=64, n_threads=2) as ctx:
        handle = ctx._handle
        handle.decode(model.tokenize("Hello there"))
        chains = _chains(model, [_default], 8)
        twins = _chains(model, [_default], 8)
        items = [(c._handle, -1) for c in chains]
        items[3] = (SamplerChain(model).add_custom(Boom()).add_greedy()._handle, -1)
        with pytest.raises(KeyError, match="boom"):
            sample_many(handle, items, n_threads=2)
        # Items 0..2 accepted a token and 4.. were not called: twins that sample the same
        # items one by one are in step again after doing what the failed call did.
        for twin in twins[:3]:
            twin._handle.sample(handle, -1)
        want = sample_many(handle, [(c._handle, -1) for c in twins])
        assert sample_many(handle, [(c._handle, -1) for c in chains], n_threads=2) == want


def test_a_chain_twice_samples_in_order(model: llamakit.Model, threads: str) -> None:
    """The same chain at two items samples twice, in item order, as on one thread."""
    with model.new_context(n_ctx=256, n_batch=64, n_threads=2) as ctx:
        handle = ctx._handle
        handle.decode(model.tokenize("Hello there"))
        one, two = _chains(model, [_default], 6), _chains(model, [_default], 6)
        want = sample_many(handle, [(c._handle, -1) for c in one + one[:2]])
        assert sample_many(handle, [(c._handle, -1) for c in two + two[:2]], n_threads=2) == want


PROMPTS = ["Hello world", "The quick brown fox", "Once upon a time", "In the beginning",
           "A B C", "What is the capital of France?", "1 2 3 4", "Good morning"] * 2


def test_generate_batch_on_two_threads(model: llamakit.Model, threads: str) -> None:
    """16 sequences on a context of 2 threads: greedy equals one-by-one generation, and
    seeded sampling equals the same on a context of 1 thread (and itself run again)."""
    with model.new_context(n_ctx=16 * 48, n_batch=64, n_seq_max=16, n_threads=2) as ctx:
        greedy = ctx.generate_batch(PROMPTS, max_new_tokens=8, temperature=0)
        seeded = [ctx.generate_batch(PROMPTS, max_new_tokens=8, seed=5) for _ in range(2)]
    with model.new_context(n_ctx=256, n_threads=2) as one:
        alone = [one.generate(p, max_new_tokens=8, temperature=0).tokens for p in PROMPTS]
    with model.new_context(n_ctx=16 * 48, n_batch=64, n_seq_max=16, n_threads=1) as ctx:
        single = ctx.generate_batch(PROMPTS, max_new_tokens=8, seed=5)
    assert [r.tokens for r in greedy] == alone
    tokens = [[r.tokens for r in run] for run in seeded]
    assert tokens[0] == tokens[1] == [r.tokens for r in single]
    assert [r.text for r in seeded[0]] == [r.text for r in single]
    assert len({tuple(t) for t in tokens[0]}) > 8  # the seeds differ per sequence
