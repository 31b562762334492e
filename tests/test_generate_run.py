"""``generate``'s native token runs (``TokenRun``, native/lk_generate.h): the tokens of a
generation decoded and sampled in C, Python checking them after each run. ``stream`` still
goes token by token through ``TokenStep``; every result here must be the one ``stream``
gives, and the context's memory must hold exactly what its prompt cache says."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import pytest

import llamakit
from llamakit._native import step as step_module
from llamakit._sampler_chain import SamplerChain
from llamakit._sampler_protocol import Candidates

PROMPT = "Once upon a time"


def _banned(model: llamakit.Model) -> dict[int, float]:
    """A logit_bias that bans every end-of-generation token: calls run to their limit."""
    return {t: float("-inf") for t in range(model.n_vocab) if model.is_eog(t)}


def _streamed(ctx: llamakit.Context, prompt: Any, **kwargs: Any) -> llamakit.GenerationResult:
    stream = ctx.stream(prompt, **kwargs)
    for _ in stream:
        pass
    result = stream.result
    assert result is not None
    return result


def _assert_held_as_known(ctx: llamakit.Context) -> None:
    assert len(ctx._past) == ctx._handle.pos_max(0) + 1


def _same(ctx: llamakit.Context, prompt: Any = PROMPT, **kwargs: Any
          ) -> llamakit.GenerationResult:
    """generate and stream of the same call from the same state give the same result, and
    leave the same tokens held."""
    ctx.reset()
    generated = ctx.generate(prompt, **kwargs)
    _assert_held_as_known(ctx)
    held = list(ctx._past)
    ctx.reset()
    streamed = _streamed(ctx, prompt, **kwargs)
    _assert_held_as_known(ctx)
    assert generated.tokens == streamed.tokens
    assert generated.text == streamed.text
    assert generated.finish_reason == streamed.finish_reason
    assert held == ctx._past
    # nothing decoded past where the per-token loop stops (drop_last would hide it above)
    assert generated.timings.native["n_eval"] == streamed.timings.native["n_eval"]
    return generated


@pytest.mark.parametrize("settings", [
    {"temperature": 0},
    {"temperature": 0.9, "seed": 3},
    {"temperature": 1.0, "top_k": 7, "top_p": 0.9, "seed": 11},
    {"temperature": 0.8, "repeat_penalty": 1.4, "frequency_penalty": 0.3, "seed": 5},
    {"temperature": 0.7, "min_p": 0.1, "dry_multiplier": 0.8, "seed": 2},
], ids=["greedy", "dist", "top-k-p", "penalties", "dry"])
def test_generate_equals_stream(ctx: llamakit.Context, settings: dict[str, Any]) -> None:
    result = _same(ctx, max_new_tokens=40, **settings)
    assert result.tokens


def test_a_long_generation_crosses_runs(model: llamakit.Model,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs of at most 3 tokens, and of at most RUN_TOKENS: the same tokens either way."""
    bias = _banned(model)
    with model.new_context(n_ctx=512) as ctx:
        whole = _same(ctx, max_new_tokens=300, temperature=0.9, seed=8, logit_bias=bias)
        assert len(whole.tokens) == 300 and whole.finish_reason == "length"
        monkeypatch.setattr(step_module, "RUN_TOKENS", 3)
        assert _same(ctx, max_new_tokens=300, temperature=0.9, seed=8,
                     logit_bias=bias).tokens == whole.tokens


def test_pieces_that_do_not_fit_a_run(ctx: llamakit.Context,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A piece that does not fit the run's buffer ends the run; the token's piece is read
    from the vocabulary instead."""
    bias = _banned(ctx.model)
    expected = _same(ctx, max_new_tokens=30, temperature=0, logit_bias=bias)
    monkeypatch.setattr(step_module, "RUN_PIECE_BYTES", 5)
    assert _same(ctx, max_new_tokens=30, temperature=0, logit_bias=bias).text == expected.text


def _boundary_stops(ctx: llamakit.Context) -> tuple[list[int], list[bytes], str]:
    """The tokens of a free-running greedy call, their pieces, and a stop string that
    begins in one token's piece and ends in a later one's."""
    ctx.reset()
    result = ctx.generate(PROMPT, max_new_tokens=60, temperature=0,
                          logit_bias=_banned(ctx.model))
    pieces = [ctx.model._handle.piece(t, False) for t in result.tokens]
    text = b""
    for i in range(10, len(pieces) - 1):
        first, second = pieces[i], pieces[i + 1]
        if first and second and first.isascii() and second.isascii():
            text = (first[-1:] + second[:1])
            break
    assert text, "no two ASCII pieces in a row"
    return result.tokens, pieces, text.decode()


def test_a_stop_string_across_tokens(ctx: llamakit.Context) -> None:
    """The run stops at the token whose piece completes the stop, as the per-token loop
    does: same tokens, text cut before the stop, and nothing decoded past it."""
    tokens, pieces, stop = _boundary_stops(ctx)
    result = _same(ctx, max_new_tokens=60, temperature=0, stop=[stop, "\x00never"],
                   logit_bias=_banned(ctx.model))
    assert result.finish_reason == "stop"
    assert stop not in result.text
    prompt = ctx.tokenize(PROMPT)
    # held: the prompt and every generated token but the last, whose piece hit the stop
    assert len(ctx._past) == len(prompt) + len(result.tokens) - 1


def test_a_stop_string_in_one_piece_and_a_multibyte_stop(ctx: llamakit.Context) -> None:
    tokens, pieces, _ = _boundary_stops(ctx)
    inner = next(p for p in pieces[5:] if len(p) >= 2 and p.isascii()).decode()
    result = _same(ctx, max_new_tokens=60, temperature=0, stop=inner,
                   logit_bias=_banned(ctx.model))
    assert result.finish_reason == "stop"
    # a stop the output never holds (multi-byte): the run goes to the limit
    assert _same(ctx, max_new_tokens=50, temperature=0, stop="\u00e9\u4e16",
                 logit_bias=_banned(ctx.model)).finish_reason == "length"


def test_stop_tokens_and_preserved_tokens(ctx: llamakit.Context) -> None:
    tokens, _, _ = _boundary_stops(ctx)
    stop_at = tokens[25]
    first = tokens.index(stop_at)
    result = _same(ctx, max_new_tokens=60, temperature=0, stop_tokens=[stop_at],
                   logit_bias=_banned(ctx.model))
    assert result.finish_reason == "eog" and len(result.tokens) == first
    preserved = _same(ctx, max_new_tokens=40, temperature=0, preserved_tokens=[tokens[3]],
                      logit_bias=_banned(ctx.model))
    assert preserved.tokens == tokens[:40]


def test_eog_ends_a_run(ctx: llamakit.Context) -> None:
    """Without the ban the tiny model reaches an end-of-generation token at some point for
    some seed; whatever it does, generate and stream agree."""
    for seed in range(6):
        _same(ctx, max_new_tokens=120, temperature=1.5, seed=seed)


@pytest.mark.parametrize("policy", ["shift", "truncate"])
def test_a_full_context(model: llamakit.Model, policy: str) -> None:
    """The run's budget stops at a full context; Python shifts it or ends the call."""
    with model.new_context(n_ctx=256, n_batch=64) as ctx:
        n_ctx = ctx.n_ctx
        result = _same(ctx, max_new_tokens=n_ctx + 40, temperature=0.8, seed=4,
                       on_overflow=policy, n_keep=2, logit_bias=_banned(model))
        assert len(result.tokens) == (n_ctx + 40 if policy == "shift" else n_ctx - len(
            ctx.tokenize(PROMPT)) + 1)


def test_a_full_context_raises_with_the_partial_result(model: llamakit.Model) -> None:
    with model.new_context(n_ctx=256, n_batch=64) as ctx:
        kwargs: dict[str, Any] = {"max_new_tokens": ctx.n_ctx + 40, "temperature": 0,
                                  "logit_bias": _banned(model)}
        with pytest.raises(llamakit.ContextOverflowError) as generated:
            ctx.generate(PROMPT, **kwargs)
        _assert_held_as_known(ctx)
        ctx.reset()
        with pytest.raises(llamakit.ContextOverflowError) as streamed:
            _streamed(ctx, PROMPT, **kwargs)
        assert generated.value.result.tokens == streamed.value.result.tokens


def test_a_grammar(ctx: llamakit.Context) -> None:
    grammar = 'root ::= ("ab" | "ba" | " c")+ "."'
    _same(ctx, max_new_tokens=30, temperature=0.9, seed=1, grammar=grammar)


class _Recorder:
    """A Python stage that records what the chain accepts."""

    def __init__(self) -> None:
        self.accepted: list[int] = []

    def apply(self, candidates: Candidates) -> None:
        pass

    def accept(self, token: int) -> None:
        self.accepted.append(token)


def test_a_callers_chain_accepts_what_it_would_token_by_token(ctx: llamakit.Context) -> None:
    """A ``sampler=`` chain with a Python stage: the run calls it from C; it accepts exactly
    the tokens the per-token loop has it accept, a stop string included."""
    ctx.reset()
    free = ctx.generate(PROMPT, max_new_tokens=60, sampler=SamplerChain(ctx.model)
                        .add_dist(seed=9)).text
    stop = free[len(free) // 2:len(free) // 2 + 2]
    seen = []
    for how in ("generate", "stream"):
        recorder = _Recorder()
        chain = SamplerChain(ctx.model).add_custom(recorder).add_dist(seed=9)
        ctx.reset()
        if how == "generate":
            result = ctx.generate(PROMPT, max_new_tokens=60, sampler=chain, stop=stop)
        else:
            result = _streamed(ctx, PROMPT, max_new_tokens=60, sampler=chain, stop=stop)
        seen.append((result.tokens, recorder.accepted))
        chain.close()
    assert seen[0] == seen[1]
    assert result.finish_reason == "stop"


def test_a_python_stage_raising_mid_run(ctx: llamakit.Context) -> None:
    """The stage's own exception, after the run's earlier tokens; the decoded ones held."""
    class FailTenth:
        calls = 0

        def apply(self, candidates: Candidates) -> None:
            FailTenth.calls += 1
            if FailTenth.calls == 10:
                raise KeyError("tenth")

    ctx.deterministic = False
    chain = SamplerChain(ctx.model).add_logit_bias(_banned(ctx.model)) \
        .add_custom(FailTenth()).add_greedy()
    with pytest.raises(KeyError, match="tenth"):
        ctx.generate(PROMPT, max_new_tokens=40, sampler=chain)
    prompt = ctx.tokenize(PROMPT)
    assert ctx._handle.pos_max(0) + 1 == len(prompt) + 9
    _assert_held_as_known(ctx)
    assert ctx.generate(PROMPT, max_new_tokens=3, temperature=0).timings \
        .prompt_tokens_cached == len(prompt) - 1
    chain.close()


def test_drop_last_removes_what_was_decoded_ahead(ctx: llamakit.Context) -> None:
    """The guard for a run that decoded past where Python's checks stopped."""
    ctx.generate(PROMPT, max_new_tokens=20, temperature=0, logit_bias=_banned(ctx.model))
    held = list(ctx._past)
    ctx._cache.drop_last(5)
    assert ctx._past == held[:-5]
    _assert_held_as_known(ctx)
    ctx._cache.drop_last(0)
    assert ctx._past == held[:-5]


def test_many_stop_tokens(ctx: llamakit.Context) -> None:
    """A vocabulary's worth of stop tokens (the run looks them up sorted), and ids outside
    the vocabulary (never sampled; beyond int32 they must not reach C)."""
    tokens, _, _ = _boundary_stops(ctx)
    keep = set(tokens[:30])
    stop_at = tokens[30]
    if stop_at in keep:
        pytest.skip("the greedy run repeats its 31st token earlier")
    many = [t for t in range(ctx.model.n_vocab) if t not in keep and t != stop_at]
    result = _same(ctx, max_new_tokens=60, temperature=0, logit_bias=_banned(ctx.model),
                   stop_tokens=[*many[::-1], stop_at, -1, 2**40],
                   preserved_tokens=[*many[:5000], -7, 2**33])
    assert result.finish_reason == "eog" and result.tokens == tokens[:30]


_HOSTILE = r"""
import sys
import llamakit
model = llamakit.load_model(sys.argv[1], backend="cpu")
ctx = model.new_context(n_ctx=512, n_batch=64)
ban = {t: float("-inf") for t in range(model.n_vocab) if model.is_eog(t)}
cases = [
    {"stop": ["\x00", "a\x00b", "x" * 100_000, *(f"s{i}" for i in range(3000))]},
    {"stop": ["\u00e9", "\U0001f600", "\x00" * 3]},
    {"stop_tokens": [-(2**63), -1, 2**31, 2**40, model.n_vocab], "preserved_tokens": [2**62, -5]},
    {"stop_tokens": list(range(model.n_vocab - 1, -1, -2)),
     "preserved_tokens": list(range(model.n_vocab))},
    {"on_overflow": "shift", "n_keep": 3, "max_new_tokens": 1200},
    {"on_overflow": "truncate", "max_new_tokens": 1200},
]
for case in cases:
    kwargs = {"max_new_tokens": 300, "temperature": 0.7, "seed": 1, "logit_bias": ban, **case}
    ctx.reset()
    generated = ctx.generate("Once upon a time", **kwargs)
    ctx.reset()
    stream = ctx.stream("Once upon a time", **kwargs)
    for _ in stream:
        pass
    assert generated.tokens == stream.result.tokens, case
    assert len(ctx._past) == ctx._handle.pos_max(0) + 1
print("ok")
"""


def test_hostile_arguments_in_a_subprocess(tiny_model_path: Any) -> None:
    """Stop strings with NULs, huge and many; token ids far outside the vocabulary and
    int32; a whole vocabulary of stop and preserved tokens; full contexts: the native run
    neither crashes (a crash kills only the child, which the test reports) nor differs
    from the per-token loop."""
    proc = subprocess.run([sys.executable, "-c", _HOSTILE, str(tiny_model_path)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode < 0:
        pytest.fail(f"the process died by {signal.Signals(-proc.returncode).name}:\n"
                    f"{proc.stderr[-2000:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "ok"
