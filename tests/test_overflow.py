"""What generation does when the context is full: error, truncate, shift."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import llamakit


@pytest.fixture
def small(model: llamakit.Model) -> Iterator[llamakit.Context]:
    with model.new_context(n_ctx=64, n_batch=64, n_threads=2) as context:
        yield context


def test_error_is_the_default_and_keeps_the_partial_result(small: llamakit.Context) -> None:
    """Filling the context raises ContextOverflowError with the numbers and the output so far."""
    n_ctx = small.n_ctx
    with pytest.raises(llamakit.ContextOverflowError) as info:
        small.generate("Hello world", max_new_tokens=n_ctx * 2, temperature=0)
    error = info.value
    assert error.n_ctx == n_ctx and error.n_tokens > n_ctx
    assert error.result is not None and len(error.result.tokens) == n_ctx - 3 + 1
    with pytest.raises(llamakit.ContextOverflowError):
        small.generate("word " * (n_ctx + 3))


def test_truncate_keeps_head_and_tail_of_a_long_prompt(small: llamakit.Context) -> None:
    """A too-long prompt keeps its first n_keep and its most recent tokens."""
    n_ctx = small.n_ctx
    prompt = list(range(100, 100 + n_ctx + 20))
    result = small.generate(prompt, max_new_tokens=1, temperature=0, on_overflow="truncate",
                            n_keep=4)
    assert result.prompt_tokens == prompt[:4] + prompt[len(prompt) - (n_ctx - 1 - 4):]
    assert len(result.prompt_tokens) == n_ctx - 1


def test_shift_generates_past_the_context_size(small: llamakit.Context) -> None:
    """With 'shift', generation goes beyond n_ctx tokens and the KV cache stays within it."""
    n_ctx = small.n_ctx
    result = small.generate("Hello world", max_new_tokens=n_ctx * 2, temperature=0,
                            on_overflow="shift", n_keep=2)
    assert len(result.tokens) == n_ctx * 2 and result.finish_reason == "length"
    assert small.kv.seq_pos_max(0) < n_ctx
    assert len(small._past) == small.kv.seq_pos_max(0) + 1
    assert small._past[:2] == result.prompt_tokens[:2]


def test_shift_matches_manual_shift(model: llamakit.Model) -> None:
    """The first tokens after a shift equal generating from the kept tokens' KV state."""
    with model.new_context(n_ctx=64, n_batch=64) as a:
        shifted = a.generate("Hello world", max_new_tokens=80, temperature=0,
                             on_overflow="shift", n_keep=3)
        truncated = a.generate("Hello world", max_new_tokens=80, temperature=0,
                               on_overflow="truncate")
    # Before the first shift both runs are the same greedy sequence.
    first = 64 - len(shifted.prompt_tokens)
    assert shifted.tokens[:first] == truncated.tokens[:first]


@pytest.mark.parametrize("kwargs", [{"on_overflow": "wrap"}, {"n_keep": -1},
                                    {"n_keep": 10**6}, {"n_keep": 1.5}])
def test_invalid_overflow_arguments(small: llamakit.Context, kwargs: dict) -> None:  # type: ignore[type-arg]
    """Bad policies or n_keep values are ConfigError."""
    with pytest.raises(llamakit.ConfigError):
        small.generate("Hello", max_new_tokens=2, **kwargs)
