"""SamplerChain: every llama.cpp stage on crafted logits, validation, state, lifecycle."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import llamakit
from llamakit import SamplerChain, SamplerError


def _logits(model: llamakit.Model, peaks: dict[int, float]) -> npt.NDArray[np.float32]:
    """-10 everywhere except the given token ids."""
    logits = np.full(model.n_vocab, -10.0, dtype=np.float32)
    for token, value in peaks.items():
        logits[token] = value
    return logits


PEAKS = {100: 5.0, 200: 4.0, 300: 3.0, 400: 2.0, 500: 1.0}


def _kept(candidates: llamakit.Candidates) -> set[int]:
    """Ids of the candidates still possible (finite logit)."""
    return {int(i) for i, x in zip(candidates.ids, candidates.logits, strict=True)
            if np.isfinite(x)}


def test_greedy_selects_the_highest_logit(model: llamakit.Model) -> None:
    """greedy selects the argmax candidate."""
    with SamplerChain(model).add_greedy() as chain:
        assert chain.apply(_logits(model, PEAKS)).selected_token == 100


def test_dist_is_reproducible_by_seed(model: llamakit.Model) -> None:
    """dist draws the same sequence for the same seed and reports that seed."""
    flat = _logits(model, {i: 0.0 for i in range(50)})

    def draws(seed: int) -> list[int | None]:
        chain = SamplerChain(model).add_top_k(50).add_dist(seed=seed)
        assert chain.seed == seed
        return [chain.apply(flat).selected_token for _ in range(20)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    assert SamplerChain(model).add_dist().seed is not None


def test_top_k_keeps_k_best(model: llamakit.Model) -> None:
    """top_k(2) leaves the two most likely tokens."""
    chain = SamplerChain(model).add_top_k(2)
    assert set(chain.apply(_logits(model, PEAKS)).ids.tolist()) == {100, 200}


def test_top_p_keeps_the_nucleus(model: llamakit.Model) -> None:
    """top_p keeps the smallest set of tokens whose probability reaches p."""
    logits = _logits(model, {1: math.log(0.5), 2: math.log(0.3), 3: math.log(0.2)})
    logits[logits == -10.0] = -1e9
    assert set(SamplerChain(model).add_top_p(0.7).apply(logits).ids.tolist()) == {1, 2}


def test_min_p_drops_unlikely_tokens(model: llamakit.Model) -> None:
    """min_p(0.5) drops tokens less than half as likely as the best."""
    logits = _logits(model, {1: 0.0, 2: math.log(0.6), 3: math.log(0.4)})
    assert set(SamplerChain(model).add_min_p(0.5).apply(logits).ids.tolist()) == {1, 2}


def test_typical_truncates(model: llamakit.Model) -> None:
    """typical(0.5) keeps fewer candidates than the whole vocabulary."""
    kept = SamplerChain(model).add_typical(0.5).apply(_logits(model, PEAKS))
    assert 0 < len(kept) < 10


def test_temp_scales_logits(model: llamakit.Model) -> None:
    """temp(0.5) doubles every logit."""
    out = SamplerChain(model).add_temp(0.5).apply(_logits(model, PEAKS))
    assert out.logits[out.ids.tolist().index(100)] == pytest.approx(10.0)


def test_temp_ext_differs_from_plain_temperature(model: llamakit.Model) -> None:
    """temp_ext with a range changes logits differently from temp at the same t."""
    logits = _logits(model, PEAKS)
    plain = SamplerChain(model).add_temp(0.8).apply(logits)
    dynamic = SamplerChain(model).add_temp_ext(0.8, 0.5, 1.0).apply(logits)
    assert not np.allclose(plain.logits, dynamic.logits)


def test_xtc_removes_top_choices(model: llamakit.Model) -> None:
    """xtc with probability 1 drops the tokens above the threshold but the least likely."""
    logits = _logits(model, {1: math.log(0.4), 2: math.log(0.35), 3: math.log(0.25)})
    logits[logits == -10.0] = -1e9
    chain = SamplerChain(model).add_top_k(3).add_xtc(1.0, 0.1, seed=1)
    assert set(chain.apply(logits).ids.tolist()) == {3}


def test_top_n_sigma_masks_outliers_below(model: llamakit.Model) -> None:
    """top_n_sigma(1) masks tokens far below the top logit."""
    out = SamplerChain(model).add_top_n_sigma(1.0).apply(_logits(model, PEAKS))
    assert _kept(out) and _kept(out) <= {100, 200, 300, 400, 500}


@pytest.mark.parametrize("add", [lambda c: c.add_mirostat(seed=3),
                                 lambda c: c.add_mirostat_v2(seed=3),
                                 lambda c: c.add_adaptive_p(0.5, seed=3)],
                         ids=["mirostat", "mirostat_v2", "adaptive_p"])
def test_selecting_stages_pick_a_likely_token(model: llamakit.Model, add: Any) -> None:
    """mirostat, mirostat_v2 and adaptive_p select one of the plausible tokens."""
    chain = add(SamplerChain(model).add_top_k(5))
    assert chain.apply(_logits(model, PEAKS)).selected_token in PEAKS


def test_penalties_lower_repeated_tokens(model: llamakit.Model) -> None:
    """After 100 was accepted twice, repeat/frequency/presence penalties lower its logit."""
    logits = _logits(model, PEAKS)
    chain = SamplerChain(model).add_penalties(64, 1.5, 0.5, 0.5)
    before = chain.apply(logits)
    chain.accept(100)
    chain.accept(100)
    after = chain.apply(logits)
    assert after.logits[100] == pytest.approx(5.0 / 1.5 - 2 * 0.5 - 0.5)
    assert after.logits[200] == before.logits[200] == 4.0
    after.softmax()
    before.softmax()
    assert after.probs[100] < before.probs[100]


def test_dry_penalises_the_continuation_of_a_repeat(model: llamakit.Model) -> None:
    """DRY lowers the token that would extend a sequence seen before."""
    logits = _logits(model, PEAKS)
    chain = SamplerChain(model).add_dry(2.0, 1.75, 2, 64, seq_breakers=["\n"])
    for token in (1000, 1001, 1002, 1003, 1000, 1001, 1002):
        chain.accept(token)
    out = chain.apply(logits)
    assert out.logits[1003] < logits[1003]
    assert out.logits[1001] == logits[1001]
    assert out.logits[200] == logits[200]


def test_logit_bias_minus_inf_bans_a_token(model: llamakit.Model) -> None:
    """A bias of -inf removes the best token; greedy then picks the next."""
    chain = SamplerChain(model).add_logit_bias({100: -math.inf, 300: 1.5}).add_greedy()
    out = chain.apply(_logits(model, PEAKS))
    assert out.logits[100] == -math.inf and out.logits[300] == pytest.approx(4.5)
    assert out.selected_token == 300


def test_grammar_masks_other_tokens(model: llamakit.Model) -> None:
    """A grammar stage leaves only tokens that can start a match."""
    out = SamplerChain(model).add_grammar('root ::= "Hello"').apply(_logits(model, PEAKS))
    kept = _kept(out)
    assert kept and not kept & set(PEAKS)
    assert all("Hello".startswith(model.token_to_piece(t)) for t in kept)


def test_infill_runs_over_candidates(model: llamakit.Model) -> None:
    """infill (after top_k) merges or drops candidates and keeps at least one."""
    out = SamplerChain(model).add_top_k(5).add_infill().apply(_logits(model, PEAKS))
    assert 1 <= len(out) <= 5


def test_add_by_name_equals_add_method(model: llamakit.Model) -> None:
    """add("top_k", k=2) builds the same stage as add_top_k(2)."""
    logits = _logits(model, PEAKS)
    by_name = SamplerChain(model).add("top_k", k=2).apply(logits)
    assert by_name.ids.tolist() == SamplerChain(model).add_top_k(2).apply(logits).ids.tolist()


@pytest.mark.parametrize(("name", "params"), [
    ("top_k", {"k": -1}), ("top_k", {"k": 1.5}), ("top_p", {"p": 1.5}),
    ("top_p", {"p": 0.5, "min_keep": 0}), ("min_p", {"p": float("nan")}),
    ("typical", {"p": -0.1}), ("temp", {"t": -1.0}), ("temp", {"t": float("inf")}),
    ("temp_ext", {"t": 1.0, "delta": -1.0, "exponent": 1.0}),
    ("xtc", {"p": 2.0, "t": 0.1}), ("top_n_sigma", {"n": float("nan")}),
    ("mirostat", {"tau": -1.0}), ("mirostat", {"m": 0}), ("mirostat_v2", {"eta": -0.5}),
    ("penalties", {"penalty_repeat": 0.0}), ("penalties", {"penalty_last_n": -2}),
    ("penalties", {"penalty_last_n": 2**31 - 1}), ("penalties", {"penalty_freq": math.inf}),
    ("dry", {"dry_multiplier": 1.0, "dry_allowed_length": -1}),
    ("dry", {"dry_multiplier": 1.0, "seq_breakers": ["a\0b"]}),
    ("dry", {"dry_multiplier": 1.0, "seq_breakers": "abc"}),
    ("adaptive_p", {"target": 2.0}), ("adaptive_p", {"target": 0.5, "decay": 1.0}),
    ("logit_bias", {"logit_bias": {5: math.inf}}), ("logit_bias", {"logit_bias": {5: "x"}}),
    ("dist", {"seed": -1}), ("dist", {"seed": 2**32}), ("greedy", {"x": 1}),
    ("grammar", {"grammar": 'root ::= "a"', "trigger_patterns": ["a"]}),
    ("nonexistent", {}),
], ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v)))
def test_invalid_stage_parameters_raise(model: llamakit.Model, name: str,
                                        params: dict[str, Any]) -> None:
    """Out-of-range or ill-typed parameters are SamplerError before llama.cpp sees them."""
    with pytest.raises(SamplerError):
        SamplerChain(model).add(name, **params)


def test_logit_bias_token_out_of_vocabulary_raises(model: llamakit.Model) -> None:
    """A logit_bias id outside the vocabulary is InvalidTokenError."""
    with pytest.raises(llamakit.InvalidTokenError):
        SamplerChain(model).add_logit_bias({model.n_vocab: 1.0})


def test_chain_without_selecting_stage_raises(ctx: llamakit.Context) -> None:
    """A chain that never selects a token is SamplerError, not llama.cpp's abort."""
    chain = SamplerChain(ctx.model).add_top_k(3)
    with pytest.raises(SamplerError, match="selected no token"):
        ctx.generate("Hi", max_new_tokens=2, sampler=chain)


def test_sample_and_accept_follow_the_context(ctx: llamakit.Context) -> None:
    """sample() picks from the context's last logits; greedy matches generate()."""
    expected = ctx.generate("Hello world", max_new_tokens=1, temperature=0).tokens[0]
    chain = SamplerChain(ctx.model).add_greedy()
    assert chain.sample(ctx) == expected
    with pytest.raises(SamplerError, match="no logits"):
        chain.sample(ctx, 5)
    with pytest.raises(llamakit.InvalidTokenError):
        chain.accept(-1)


def test_reset_and_clone_keep_state_apart(model: llamakit.Model) -> None:
    """clone() copies the accepted history; reset() forgets it; seeds replay after reset."""
    logits = _logits(model, PEAKS)
    chain = SamplerChain(model).add_penalties(64, 2.0).add_dist(seed=11)
    chain.accept(100)
    twin = chain.clone()
    assert twin.apply(logits).logits[100] == pytest.approx(2.5)
    chain.reset()
    assert chain.apply(logits).logits[100] == pytest.approx(5.0)
    assert twin.apply(logits).logits[100] == pytest.approx(2.5)
    assert twin.stages == chain.stages == ["penalties", "dist"] and twin.seed == 11
    chain.reset()
    first = [chain.apply(logits).selected_token for _ in range(5)]
    chain.reset()
    assert [chain.apply(logits).selected_token for _ in range(5)] == first


def test_chain_for_another_model_is_refused(ctx: llamakit.Context, synthetic_model: Any) -> None:
    """A chain made for one model cannot sample from another model's context."""
    with llamakit.load_model(synthetic_model(seed=1), backend="cpu") as other:
        chain = SamplerChain(other).add_greedy()
        with pytest.raises(SamplerError, match="another model"):
            ctx.generate("Hi", max_new_tokens=1, sampler=chain)


def test_closing_the_model_closes_its_chains(synthetic_model: Any) -> None:
    """Closing a model closes its chains; using one then is ClosedError."""
    model = llamakit.load_model(synthetic_model(seed=2), backend="cpu")
    chain = SamplerChain(model).add_greedy()
    model.close()
    assert chain.closed
    with pytest.raises(llamakit.ClosedError):
        chain.accept(1)
    chain.close()


def test_sampler_keyword_excludes_sampling_keywords(ctx: llamakit.Context) -> None:
    """sampler= with sampling keywords is an error; a non-chain sampler too."""
    chain = SamplerChain(ctx.model).add_greedy()
    with pytest.raises(SamplerError, match="not both"):
        ctx.generate("Hi", max_new_tokens=1, sampler=chain, temperature=0.5)
    with pytest.raises(SamplerError):
        ctx.generate("Hi", max_new_tokens=1, sampler="greedy")  # type: ignore[arg-type]


def test_a_user_chain_is_reset_per_generation(ctx: llamakit.Context) -> None:
    """generate(sampler=chain) resets the chain, so the same call repeats itself."""
    chain = SamplerChain(ctx.model).add_top_k(20).add_temp(1.5).add_dist(seed=4)
    first = ctx.generate("Once", max_new_tokens=8, sampler=chain)
    second = ctx.generate("Once", max_new_tokens=8, sampler=chain)
    assert first.tokens == second.tokens and first.seed == 4
    assert not chain.closed
