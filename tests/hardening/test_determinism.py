"""Class 8 of issue 21: a deterministic call gives the tokens of a fresh context.

No synthetic model here shows a batch-size-dependent kernel on the CPU backend (its
products are bit-identical whatever the split; see docs/sampling.md), so these tests
check the mechanism: in deterministic mode every prompt position is evaluated in the
same decode chunk, with the same chunk boundaries, as in a fresh context.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import llamakit
from llamakit._config import load_config

N_BATCH = 16
FIRST = "The quick brown fox jumps over the lazy dog while the cat sleeps. " * 3
SECOND = FIRST + "Then a bird sang a song about the morning sun."


def _recording(ctx: llamakit.Context) -> list[tuple[int, int]]:
    """Record every decode of ``ctx`` as (first position, number of tokens)."""
    calls: list[tuple[int, int]] = []
    handle = ctx._handle
    decode = handle.decode

    def record(tokens: list[int], *args: bool) -> None:
        calls.append((handle.pos_max(0) + 1, len(tokens)))
        decode(tokens, *args)

    handle.decode = record  # type: ignore[method-assign]
    return calls


@pytest.fixture
def make_ctx(model: llamakit.Model) -> Iterator[object]:
    made: list[llamakit.Context] = []

    def make(**kwargs: object) -> llamakit.Context:
        ctx = model.new_context(n_ctx=256, n_batch=N_BATCH, n_ubatch=N_BATCH, n_threads=1,
                                **kwargs)  # type: ignore[arg-type]
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


def _shared(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _prompt_chunks(calls: list[tuple[int, int]], n_prompt: int) -> list[tuple[int, int]]:
    return [c for c in calls if c[0] < n_prompt]


def test_reused_context_decodes_with_fresh_boundaries(make_ctx: object) -> None:
    """After an earlier call, a greedy call re-evaluates from a fresh chunk boundary, with
    a fresh context's chunks, and gives the fresh context's tokens and logits."""
    fresh = make_ctx()  # type: ignore[operator]
    fresh_calls = _recording(fresh)
    expected = fresh.generate(SECOND, max_new_tokens=12, temperature=0)
    fresh_logits = fresh._handle.logits(-1)
    n_prompt = len(expected.prompt_tokens)

    used = make_ctx()  # type: ignore[operator]
    used.generate(FIRST, max_new_tokens=12, temperature=0)
    calls = _recording(used)
    again = used.generate(SECOND, max_new_tokens=12, temperature=0)
    cached = again.timings.prompt_tokens_cached
    assert cached > 0 and cached % N_BATCH == 0  # whole aligned chunks were still reused
    fresh_prompt = _prompt_chunks(fresh_calls, n_prompt)
    assert _prompt_chunks(calls, n_prompt) == [c for c in fresh_prompt if c[0] >= cached]
    assert again.tokens == expected.tokens
    assert np.array_equal(used._handle.logits(-1), fresh_logits)


def test_without_determinism_the_boundaries_move(make_ctx: object) -> None:
    """deterministic=False reuses the whole shared prefix: the first chunk then starts
    where the shared part ends, not at a fresh context's boundary."""
    used = make_ctx(deterministic=False)  # type: ignore[operator]
    used.generate(FIRST, max_new_tokens=12, temperature=0)
    calls = _recording(used)
    again = used.generate(SECOND, max_new_tokens=12, temperature=0)
    assert again.timings.prompt_tokens_cached % N_BATCH != 0
    assert calls[0][0] == again.timings.prompt_tokens_cached


@pytest.mark.parametrize(("setting", "sampling", "exact"), [
    (None, {"temperature": 0}, True),
    (None, {"temperature": 0.8, "seed": 7}, True),
    (None, {"temperature": 0.8}, False),
    (True, {"temperature": 0.8}, True),
    (False, {"temperature": 0}, False),
], ids=["auto-greedy", "auto-seeded", "auto-random", "on", "off"])
def test_when_calls_are_deterministic(make_ctx: object, setting: bool | None,
                                      sampling: dict[str, float], exact: bool) -> None:
    """Unset, determinism follows greedy or seeded sampling; True/False force it."""
    ctx = make_ctx(deterministic=setting)  # type: ignore[operator]
    first = ctx.generate(FIRST, max_new_tokens=4, **sampling)  # type: ignore[arg-type]
    second = ctx.generate(SECOND, max_new_tokens=4, **sampling)  # type: ignore[arg-type]
    shared = _shared(first.prompt_tokens, second.prompt_tokens)
    cached = second.timings.prompt_tokens_cached
    if exact:
        assert cached == shared - shared % N_BATCH
    else:
        assert cached == shared


def test_generated_tokens_are_never_reused_in_deterministic_mode(make_ctx: object) -> None:
    """A prompt that continues the previous call's output re-evaluates that output: it was
    decoded one token at a time, a fresh context decodes it in a chunk."""
    ctx = make_ctx()  # type: ignore[operator]
    first = ctx.generate(FIRST, max_new_tokens=20, temperature=0)
    follow = first.prompt_tokens + first.tokens
    second = ctx.generate(follow, max_new_tokens=4, temperature=0)
    shared = len(first.prompt_tokens)
    assert second.timings.prompt_tokens_cached == shared - shared % N_BATCH


def test_a_loaded_state_counts_as_cached(make_ctx: object) -> None:
    """A state loaded on purpose is reused as it is, also in deterministic mode."""
    ctx = make_ctx()  # type: ignore[operator]
    first = ctx.generate(FIRST, max_new_tokens=2, temperature=0)
    ctx.set_state(ctx.state_bytes())
    again = ctx.generate(SECOND, max_new_tokens=2, temperature=0)
    assert again.timings.prompt_tokens_cached == _shared(first.prompt_tokens,
                                                         again.prompt_tokens)


def test_a_shift_forgets_the_aligned_part_after_n_keep(make_ctx: object) -> None:
    """After a context shift, only whole chunks before n_keep stay reusable."""
    ctx = make_ctx()  # type: ignore[operator]
    cache = ctx._cache
    cache.evaluate(list(range(1, 65)), N_BATCH, exact=True)
    assert cache._aligned == 64  # four whole chunks
    cache.shift(N_BATCH + 3)
    assert cache._aligned == N_BATCH


def test_config_switch(tmp_path: Path) -> None:
    """``[context] deterministic`` is a schema field; it refuses non-booleans."""
    path = tmp_path / "llamakit.toml"
    path.write_text("[context]\ndeterministic = true\n")
    assert load_config(path).context.deterministic is True
    path.write_text('[context]\ndeterministic = "sometimes"\n')
    with pytest.raises(llamakit.ConfigError):
        load_config(path)
