"""The keyword API of generate/stream: each keyword's stage, equivalences, GGUF defaults."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

import llamakit
from llamakit import SamplerChain, SamplerError


def _names(ctx: llamakit.Context, **kwargs: Any) -> list[str]:
    """The stages generate() would build for these keywords."""
    return [s.name for s in ctx._sampling(kwargs).stages(1, ctx.n_ctx)]


@pytest.mark.parametrize(("kwargs", "stages"), [
    ({}, ["top_k", "top_p", "min_p", "temp", "dist"]),
    ({"temperature": 0}, ["greedy"]),
    ({"top_k": 0, "top_p": 1.0, "min_p": 0.0}, ["temp", "dist"]),
    ({"typical_p": 0.9}, ["top_k", "typical", "top_p", "min_p", "temp", "dist"]),
    ({"top_n_sigma": 1.5}, ["top_n_sigma", "top_k", "top_p", "min_p", "temp", "dist"]),
    ({"xtc_probability": 0.5}, ["top_k", "top_p", "min_p", "xtc", "temp", "dist"]),
    ({"dynatemp_range": 0.5}, ["top_k", "top_p", "min_p", "temp_ext", "dist"]),
    ({"repeat_penalty": 1.1}, ["penalties", "top_k", "top_p", "min_p", "temp", "dist"]),
    ({"frequency_penalty": 0.5}, ["penalties", "top_k", "top_p", "min_p", "temp", "dist"]),
    ({"presence_penalty": 0.5}, ["penalties", "top_k", "top_p", "min_p", "temp", "dist"]),
    ({"repeat_penalty": 1.1, "repeat_last_n": 0}, ["top_k", "top_p", "min_p", "temp", "dist"]),
    ({"dry_multiplier": 0.8}, ["dry", "top_k", "top_p", "min_p", "temp", "dist"]),
    ({"mirostat": 1}, ["temp", "mirostat"]),
    ({"mirostat": 2, "repeat_penalty": 1.2}, ["temp", "mirostat_v2"]),
    ({"adaptive_target": 0.3}, ["top_k", "top_p", "min_p", "temp", "adaptive_p"]),
    ({"logit_bias": {5: -1.0}}, ["logit_bias", "top_k", "top_p", "min_p", "temp", "dist"]),
    ({"grammar": 'root ::= "a"'}, ["grammar", "top_k", "top_p", "min_p", "temp", "dist"]),
    ({"samplers": ["min_p", "top-k", "infill", "temp"]},
     ["min_p", "top_k", "infill", "temp", "dist"]),
    ({"temperature": 0, "repeat_penalty": 1.3, "dry_multiplier": 1.0, "top_k": 5},
     ["penalties", "dry", "greedy"]),
], ids=lambda v: ",".join(v) if isinstance(v, dict) else None)
def test_each_keyword_builds_its_stage(ctx: llamakit.Context, kwargs: dict[str, Any],
                                       stages: list[str]) -> None:
    """A keyword adds llama.cpp's stage in llama.cpp's order, and generation runs with it."""
    assert _names(ctx, **kwargs) == stages
    result = ctx.generate("Hello", max_new_tokens=3, seed=5, **kwargs)
    assert 1 <= len(result.tokens) <= 3 or result.finish_reason == "eog"


def test_temperature_zero_equals_a_greedy_chain(ctx: llamakit.Context) -> None:
    """temperature=0 gives exactly what a lone greedy stage gives."""
    greedy = SamplerChain(ctx.model).add_greedy()
    expected = ctx.generate("Once upon", max_new_tokens=12, sampler=greedy).tokens
    assert ctx.generate("Once upon", max_new_tokens=12, temperature=0).tokens == expected
    result = ctx.generate("Once upon", max_new_tokens=12, top_k=1, temperature=1.5, seed=9)
    assert result.tokens == expected  # top_k=1 leaves only the greedy choice


def test_seed_makes_sampling_reproducible(ctx: llamakit.Context) -> None:
    """The same seed repeats a sample; other seeds differ; the result reports the seed."""
    kwargs: dict[str, Any] = {"max_new_tokens": 10, "temperature": 1.5, "top_k": 0,
                              "top_p": 1.0, "min_p": 0.0}
    runs = [ctx.generate("Once", seed=s, **kwargs).tokens for s in (1, 1, 2, 3)]
    assert runs[0] == runs[1] and len({tuple(r) for r in runs}) == 3
    assert ctx.generate("Once", seed=77, **kwargs).seed == 77


def _repeats(tokens: list[int]) -> int:
    return sum(n - 1 for n in Counter(tokens).values())


@pytest.mark.parametrize("kwargs", [{"repeat_penalty": 1e6}, {"frequency_penalty": 1e4},
                                    {"presence_penalty": 1e4}],
                         ids=["repeat", "frequency", "presence"])
def test_penalties_stop_greedy_repetition(ctx: llamakit.Context, kwargs: dict[str, Any]) -> None:
    """Greedy text of the random model repeats itself; strong penalties prevent that."""
    plain = ctx.generate("the the", max_new_tokens=40, temperature=0)
    assert _repeats(plain.tokens) > 0
    penalised = ctx.generate("the the", max_new_tokens=40, temperature=0,
                             repeat_last_n=-1, **kwargs)
    assert _repeats(penalised.tokens) == 0
    assert not set(penalised.tokens) & set(penalised.prompt_tokens[1:])  # the prompt counts


def test_dry_keyword_breaks_repeated_sequences(ctx: llamakit.Context) -> None:
    """A strong DRY penalty shortens the longest repeated run of greedy text."""
    def longest_repeat(tokens: list[int]) -> int:
        best = 0
        for i in range(len(tokens)):
            for j in range(i + 1, len(tokens)):
                k = 0
                while j + k < len(tokens) and tokens[i + k] == tokens[j + k]:
                    k += 1
                best = max(best, k)
        return best

    plain = ctx.generate("the the", max_new_tokens=40, temperature=0).tokens
    dry = ctx.generate("the the", max_new_tokens=40, temperature=0, dry_multiplier=50.0,
                       dry_allowed_length=1, dry_penalty_last_n=-1).tokens
    assert longest_repeat(plain) >= 2
    assert longest_repeat(dry) < longest_repeat(plain)


def test_logit_bias_keyword_bans_a_token(ctx: llamakit.Context) -> None:
    """logit_bias={t: -inf} keeps t out of the output; string ids (config) work too."""
    first = ctx.generate("Hello", max_new_tokens=5, temperature=0).tokens
    banned = ctx.generate("Hello", max_new_tokens=5, temperature=0,
                          logit_bias={first[0]: -math.inf}).tokens
    assert first[0] not in banned
    as_text = ctx.generate("Hello", max_new_tokens=5, temperature=0,
                           logit_bias={str(first[0]): -math.inf})  # type: ignore[dict-item]
    assert as_text.tokens == banned


@pytest.mark.parametrize("kwargs", [
    {"mirostat": 1, "mirostat_tau": 3.0, "mirostat_eta": 0.2},
    {"mirostat": 2},
    {"adaptive_target": 0.4, "adaptive_decay": 0.5},
    {"xtc_probability": 1.0, "xtc_threshold": 0.05},
    {"typical_p": 0.5, "min_keep": 3},
    {"dynatemp_range": 0.7, "dynatemp_exponent": 2.0},
    {"top_n_sigma": 0.5},
], ids=lambda kw: ",".join(kw))
def test_random_stages_are_seeded(ctx: llamakit.Context, kwargs: dict[str, Any]) -> None:
    """Each random or reshaping stage reached by keywords is reproducible by seed."""
    a = ctx.generate("Once", max_new_tokens=8, seed=21, **kwargs).tokens
    assert a == ctx.generate("Once", max_new_tokens=8, seed=21, **kwargs).tokens


@pytest.mark.parametrize("kwargs", [
    {"temperature": -1.0}, {"top_p": 1.5}, {"top_k": -1}, {"min_p": float("nan")},
    {"typical_p": 2.0}, {"repeat_penalty": 0.0}, {"repeat_last_n": -2},
    {"mirostat": 3}, {"mirostat_tau": -1.0}, {"adaptive_decay": 1.0}, {"min_keep": 0},
    {"dry_sequence_breakers": "abc"}, {"logit_bias": [1, 2]}, {"logit_bias": {1: math.inf}},
    {"logit_bias": {"x": 1.0}}, {"seed": 2**40}, {"samplers": "top_k"},
    {"samplers": [("top_k", {"k": 3})]}, {"samplers": [3]},
    {"grammar": 3}, {"grammar_trigger_tokens": ["a"]},
], ids=lambda kw: ",".join(kw))
def test_invalid_keywords_raise(ctx: llamakit.Context, kwargs: dict[str, Any]) -> None:
    """Out-of-range keyword values are SamplerError before anything runs."""
    with pytest.raises(SamplerError):
        ctx.generate("Hi", max_new_tokens=1, **kwargs)


def test_unknown_keyword_is_a_type_error(ctx: llamakit.Context) -> None:
    """A misspelt keyword is a TypeError naming it, in generate and stream."""
    with pytest.raises(TypeError, match="temprature"):
        ctx.generate("Hi", temprature=0.5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"stream\(\)"):
        ctx.stream("Hi", top_kk=3)  # type: ignore[call-arg]


def test_unknown_sampler_name_raises(ctx: llamakit.Context) -> None:
    """A samplers= name that is neither llama.cpp's nor a plugin's is SamplerError."""
    with pytest.raises(SamplerError, match="unknown sampler 'nope'"):
        ctx.generate("Hi", max_new_tokens=1, samplers=["top_k", "nope"])


def test_gguf_sampling_defaults_apply_unless_overridden(synthetic_model: Any) -> None:
    """general.sampling.* from the GGUF are the defaults; keywords and config override."""
    path = synthetic_model(metadata={
        "general.sampling.temp": 0.0, "general.sampling.top_k": 7,
        "general.sampling.sequence": "top_k;bogus;temperature",
        "general.sampling.top_p": "not a number", "general.sampling.penalty_repeat": 1.5,
    })
    with llamakit.load_model(path, backend="cpu") as model, \
            model.new_context(n_ctx=128, n_threads=1) as ctx:
        params = ctx._sampling({})
        assert params.greedy and params.get("top_k") == 7
        assert params.get("repeat_penalty") == 1.5 and params.get("top_p") == 0.95
        greedy = ctx.generate("Hi", max_new_tokens=6, sampler=SamplerChain(model)
                              .add_penalties(64, 1.5).add_greedy()).tokens
        assert ctx.generate("Hi", max_new_tokens=6).tokens == greedy
        assert _names(ctx, temperature=0.5) == ["top_k", "temp", "dist"]
        ctx.sampling = ctx._sampling({"temperature": 0.7}).merged(ctx.sampling)
        assert ctx._sampling({}).get("temperature") == 0.7
