"""``StepSampler`` (a batch step's sampling) gives what ``sample_many`` gives, and stays safe.

It keeps its cffi arrays, the chain pointers and their top-k promises between steps while
the same chains step, pins the chains in one ``_TREE`` turn and reads the pieces after the
tokens: the tokens, flags and pieces must equal ``sample_many``'s step after step (also when
the chains change between steps), a closed chain must raise ``ClosedError`` with nothing
sampled, and a failing chain must raise its error and leave every pin released.
"""

from __future__ import annotations

import pytest

import llamakit
from llamakit import SamplerChain
from llamakit._native.sample_step import StepSampler
from llamakit._native.sampler import sample_many


def _chain(model: llamakit.Model, seed: int) -> SamplerChain:
    if seed % 3 == 0:
        return SamplerChain(model).add_logit_bias({seed % 50: 2.0}).add_greedy()
    return (SamplerChain(model).add_top_k(40).add_top_p(0.95).add_temp(0.8)
            .add_dist(seed=seed))


def test_equals_sample_many_across_steps(model: llamakit.Model) -> None:
    with model.new_context(n_ctx=256, n_batch=64, n_threads=2) as ctx:
        handle = ctx._handle
        one = [_chain(model, 1000 + i) for i in range(12)]
        two = [_chain(model, 1000 + i) for i in range(12)]
        sampler = StepSampler(handle)
        handle.decode(model.tokenize("Once upon a time there was"), all_outputs=True)
        for step in range(5):
            # steps 0-1 the same chains, then fewer, then others again
            count = [12, 12, 5, 12, 9][step]
            outputs = [-1 - (i % 4) for i in range(count)]
            special = step == 3
            want = sample_many(handle, [(c._handle, o) for c, o in
                                        zip(one[:count], outputs, strict=False)],
                               special, n_threads=None)
            tokens, eogs = sampler.sample([c._handle for c in two[:count]], outputs, special)
            assert list(zip(tokens, eogs, sampler.pieces(), strict=True)) == want
            fed = [token for token, _, _ in want[:4]]
            handle.decode(fed + [fed[0]] * (4 - len(fed)), all_outputs=True)
        for chain in one + two:
            assert chain._handle._resource.calls == 0
        assert sampler.sample([], []) == ([], []) and sampler.pieces() == []


def test_closed_chain_raises_and_releases(model: llamakit.Model) -> None:
    with model.new_context(n_ctx=256, n_batch=64, n_threads=2) as ctx:
        handle = ctx._handle
        chains = [_chain(model, i) for i in range(4)]
        sampler = StepSampler(handle)
        handle.decode(model.tokenize("Hello there"))
        sampler.sample([c._handle for c in chains], [-1] * 4)
        chains[2].close()
        with pytest.raises(llamakit.ClosedError):
            sampler.sample([c._handle for c in chains], [-1] * 4)
        for chain in (chains[0], chains[1], chains[3]):
            assert chain._handle._resource.calls == 0
        with pytest.raises(llamakit.SamplerError, match="no logits for output 99"):
            sampler.sample([chains[0]._handle, chains[1]._handle], [-1, 99])
        assert chains[0]._handle._resource.calls == 0 and chains[1]._handle._resource.calls == 0
        # usable afterwards
        tokens, _ = sampler.sample([chains[0]._handle], [-1])
        assert len(tokens) == 1 and len(sampler.pieces()) == 1
