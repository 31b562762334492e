"""The shim's fast paths with ``logit_bias`` stages give exactly llama.cpp's tokens.

A chain that starts with logit-bias stages keeps the greedy argmax and the top-k shortcut:
the few biased ids' logits are folded into the selection instead of llama.cpp applying the
biases to all n_vocab candidates. Each test runs two identically built chains over the same
logits, one with the fast paths and one forced onto the general path (``fast_paths =
False``: the whole chain over every candidate, as llama.cpp's own sampling does), and
compares them token for token: random logits (with ties, -inf and NaN), many seeds, biased
and banned ids, and real decodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

import llamakit
from llamakit import SamplerChain
from llamakit._native.sampler import sample_many

Build = Callable[[llamakit.Model, list[tuple[int, float]], int], SamplerChain]


def _greedy(model: llamakit.Model, bias: list[tuple[int, float]], seed: int) -> SamplerChain:
    return SamplerChain(model).add("logit_bias", logit_bias=bias).add_greedy()


def _default(k: int) -> Build:
    def build(model: llamakit.Model, bias: list[tuple[int, float]], seed: int) -> SamplerChain:
        return (SamplerChain(model).add("logit_bias", logit_bias=bias).add_top_k(k)
                .add_top_p(0.95).add_min_p(0.05).add_temp(0.8).add_dist(seed=seed))
    return build


def _two_bias_stages(model: llamakit.Model, bias: list[tuple[int, float]],
                     seed: int) -> SamplerChain:
    half = len(bias) // 2
    return (SamplerChain(model).add("logit_bias", logit_bias=bias[:half])
            .add("logit_bias", logit_bias=bias[half:]).add_top_k(5).add_temp(1.5)
            .add_dist(seed=seed))


def _logits(rng: np.random.Generator, n_vocab: int, kind: str) -> np.ndarray:
    logits = rng.normal(0.0, 3.0, n_vocab).astype(np.float32)
    if kind == "ties":  # coarse values: many exact ties, at the top too
        logits = np.round(logits * 2.0) / 2.0
    elif kind == "inf":
        logits[rng.choice(n_vocab, n_vocab // 2, replace=False)] = -np.inf
    elif kind == "nan":
        logits[0 if rng.random() < 0.3 else int(rng.integers(0, n_vocab))] = np.nan
    return logits.astype(np.float32)


def _bias(rng: np.random.Generator, logits: np.ndarray) -> list[tuple[int, float]]:
    """Banned ids among the best (the way end-of-generation tokens are suppressed), raised
    ones from anywhere, token 0 at times, and an id biased twice."""
    n_vocab = logits.size
    order = np.argsort(-np.nan_to_num(logits, nan=-np.inf), kind="stable")
    bias: list[tuple[int, float]] = [(int(t), -math.inf) for t in order[:int(rng.integers(0, 4))]]
    for _ in range(int(rng.integers(0, 6))):
        bias.append((int(rng.integers(0, n_vocab)), float(rng.normal(0.0, 8.0))))
    if rng.random() < 0.3:
        bias.append((0, float(rng.choice([-math.inf, 5.0, -2.5]))))
    if bias and rng.random() < 0.5:
        bias.append((bias[-1][0], 1.25))
    if rng.random() < 0.3 and bias:  # a raised id lands exactly on the best logit
        token = int(rng.integers(0, n_vocab))
        best = float(np.nanmax(np.where(np.isinf(logits), np.nan, logits)))
        logits[token] = best - 1.0
        bias.append((token, 1.0))
    rng.shuffle(bias)  # type: ignore[arg-type]
    return bias


def _compare(model: llamakit.Model, build: Build, seeds: range, kinds: tuple[str, ...],
             draws: int = 3) -> None:
    for seed in seeds:
        rng = np.random.default_rng(seed)
        kind = kinds[seed % len(kinds)]
        logits = _logits(rng, model.n_vocab, kind)
        bias = _bias(rng, logits)
        fast, slow = build(model, bias, seed), build(model, bias, seed)
        slow._handle.fast_paths = False
        for _ in range(draws):
            got, want = fast._handle.sample_logits(logits), slow._handle.sample_logits(logits)
            assert got == want, f"seed {seed} ({kind}), bias {bias}"
        fast.close()
        slow.close()


KINDS = ("plain", "ties", "inf", "nan")


def test_greedy_after_logit_bias_matches_the_general_path(model: llamakit.Model) -> None:
    _compare(model, _greedy, range(400), KINDS, draws=1)


def test_greedy_argmax_edge_cases(model: llamakit.Model) -> None:
    """The argmax (one pass of 8 lanes where the CPU has AVX2, two passes otherwise) picks
    llama.cpp's token where lanes, runs between biased ids and the tail meet: ties across
    lanes and runs keep the first index, the maximum in the last few logits, +inf, all
    -inf (the first candidate), a NaN first logit (never beaten), NaNs elsewhere."""
    n = model.n_vocab
    cases: list[tuple[np.ndarray, list[tuple[int, float]]]] = []
    base = np.linspace(-5.0, -1.0, n, dtype=np.float32)[::-1].copy()
    for spots in ([3, 10], [3, 11], [9, n - 1], [n - 9, n - 1], [n - 1], [n - 3, n - 2],
                  [17, 18, 4000]):
        logits = base.copy()
        logits[spots] = 7.0  # a tie between lanes, within one, with the tail
        cases.append((logits, []))
        cases.append((logits, [(spots[0], -math.inf)]))  # the first banned: the next wins
        cases.append((logits, [(2, 7.0), (spots[-1], 7.0)]))  # a biased id ties earlier
    logits = base.copy()
    logits[[100, 5]] = np.inf
    cases.append((logits, []))
    cases.append((np.full(n, -np.inf, dtype=np.float32), []))
    cases.append((np.full(n, -np.inf, dtype=np.float32), [(n - 2, 1.0)]))
    logits = base.copy()
    logits[0] = np.nan
    logits[50] = 9.0
    cases.append((logits, []))
    logits = base.copy()
    logits[[1, 9, n - 1]] = np.nan
    cases.append((logits, [(0, -math.inf)]))
    for logits, bias in cases:
        fast, slow = _greedy(model, bias, 0), _greedy(model, bias, 0)
        slow._handle.fast_paths = False
        assert fast._handle.sample_logits(logits) == slow._handle.sample_logits(logits), bias
        fast.close()
        slow.close()


@pytest.mark.parametrize("k", [1, 2, 40, 300])
def test_top_k_after_logit_bias_matches_the_general_path(model: llamakit.Model, k: int) -> None:
    _compare(model, _default(k), range(120), KINDS)


def test_several_bias_stages_match_the_general_path(model: llamakit.Model) -> None:
    _compare(model, _two_bias_stages, range(150), KINDS)


def test_the_promise_survives_bias_stages_only(model: llamakit.Model) -> None:
    bias = [(3, -math.inf)]
    assert _default(40)(model, bias, 1)._handle.first_top_k == 40
    assert _two_bias_stages(model, bias * 2, 1)._handle.first_top_k == 5
    assert _two_bias_stages(model, bias * 2, 1).clone()._handle.first_top_k == 5
    chain = SamplerChain(model).add("logit_bias", logit_bias=bias).add_temp(0.5).add_top_k(5)
    assert chain.add_dist(seed=1)._handle.first_top_k == 0
    # The native stage keeps llama.cpp's name; an empty bias is llama.cpp's no-op stage.
    assert _greedy(model, bias, 0)._handle.stage_names() == ["logit-bias", "greedy"]
    assert _greedy(model, [], 0)._handle.stage_names() == ["?logit-bias", "greedy"]


def test_banning_the_best_token_over_real_decodes(ctx: llamakit.Context) -> None:
    """Generation with end-of-generation-style bans: fast and general chains agree token for
    token while each sampled token is fed back."""
    model = ctx.model
    for seed, build in enumerate([_greedy, _default(40), _default(3)]):
        ctx.reset()
        ctx._handle.decode(model.tokenize("Once upon a time"))
        first = int(np.argmax(ctx._handle.logits(-1)))
        bias = [(first, -math.inf), (model.n_vocab - 1, 2.0), (first, 0.5)]
        fast, slow = build(model, bias, seed), build(model, bias, seed)
        slow._handle.fast_paths = False
        for _ in range(16):
            token = fast.sample(ctx)
            assert token == slow._handle.sample(ctx._handle)
            assert token != first
            ctx._handle.decode([token])


def test_sample_piece_is_sample_then_is_eog_and_piece(ctx: llamakit.Context) -> None:
    model = ctx.model
    handle = model._handle
    chain = _default(40)(model, [(5, -math.inf)], 7)
    twin = _default(40)(model, [(5, -math.inf)], 7)
    ctx._handle.decode(model.tokenize("The quick brown fox"))
    for special in (False, True, False):
        token, eog, piece = chain._handle.sample_piece(ctx._handle, -1, special)
        assert token == twin.sample(ctx)
        assert eog == handle.is_eog(token)
        assert piece == handle.piece(token, special)
        ctx._handle.decode([token])
    # An end-of-generation token: its flag and (special) piece.
    eos = handle.special_token("eos")
    assert eos is not None
    force = SamplerChain(model).add("logit_bias", logit_bias=[(eos, 1e4)]).add_greedy()
    token, eog, piece = force._handle.sample_piece(ctx._handle, -1, True)
    assert (token, eog, piece) == (eos, True, handle.piece(eos, True))


def test_sample_many_equals_one_call_per_chain(model: llamakit.Model) -> None:
    """Four chains sampled in one native call equal four ``sample_piece`` calls on twin
    chains; a failing chain raises its own error."""
    with model.new_context(n_ctx=256, n_batch=64, n_threads=2) as ctx:
        handle = ctx._handle
        builds = [_greedy, _default(40), _default(2), _two_bias_stages]
        bias = [(7, -math.inf), (11, 3.0)]
        chains = [b(model, bias, s) for s, b in enumerate(builds)]
        twins = [b(model, bias, s) for s, b in enumerate(builds)]
        handle.decode(model.tokenize("Three more words"))
        outputs = [-1] * 4  # every chain samples the same (last) output here
        for _ in range(5):
            pairs = [(c._handle, i) for c, i in zip(chains, outputs, strict=True)]
            got = sample_many(handle, pairs)
            want = [t._handle.sample_piece(handle, i) for t, i in zip(twins, outputs, strict=True)]
            assert got == want
            handle.decode([got[0][0]])
        assert sample_many(handle, []) == []
        empty = SamplerChain(model).add_top_k(3)  # selects nothing
        with pytest.raises(llamakit.SamplerError):
            sample_many(handle, [(chains[0]._handle, -1), (empty._handle, -1)])
