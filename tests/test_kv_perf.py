"""KV-cache control and llama.cpp's perf counters on a context."""

from __future__ import annotations

import pytest

import llamakit


def test_seq_pos_and_remove(ctx: llamakit.Context) -> None:
    """seq_pos_max follows generation; seq_rm drops a tail and generation reuses the rest."""
    ctx.deterministic = False  # reuse the whole shared prefix, as this test checks
    assert ctx.kv.seq_pos_max(0) == -1
    first = ctx.generate("Hello world again", max_new_tokens=4, temperature=0)
    held = ctx.kv.seq_pos_max(0) + 1
    assert held == len(first.prompt_tokens) + len(first.tokens) - 1
    assert ctx.kv.seq_pos_min(0) == 0
    assert ctx.kv.seq_rm(0, 2, -1)
    assert ctx.kv.seq_pos_max(0) == 1
    again = ctx.generate("Hello world again", max_new_tokens=4, temperature=0)
    assert again.tokens == first.tokens
    assert again.timings.prompt_tokens_cached == 2
    ctx.kv.clear()
    assert ctx.kv.seq_pos_max(0) == -1


def test_seq_add_then_generation_recomputes(ctx: llamakit.Context) -> None:
    """After a manual position shift, generation evaluates its prompt in full."""
    first = ctx.generate("Hello world", max_new_tokens=3, temperature=0)
    assert ctx.kv.can_shift
    ctx.kv.seq_add(0, 0, -1, 5)
    again = ctx.generate("Hello world", max_new_tokens=3, temperature=0)
    assert again.timings.prompt_tokens_cached == 0
    assert again.tokens == first.tokens


@pytest.mark.parametrize("call", [
    lambda kv: kv.seq_rm(1, 0, -1), lambda kv: kv.seq_rm(-2, 0, -1),
    lambda kv: kv.seq_cp(0, 3, 0, -1), lambda kv: kv.seq_keep(7),
    lambda kv: kv.seq_add(9, 0, 1, 1), lambda kv: kv.seq_div(0, 0, 4, 0),
    lambda kv: kv.seq_pos_max(1), lambda kv: kv.seq_rm(0, 2**40, -1),
    lambda kv: kv.seq_rm("0", 0, -1),
])
def test_invalid_kv_arguments_raise(ctx: llamakit.Context, call) -> None:  # type: ignore[no-untyped-def]
    """Sequence ids outside the context and bad positions are ConfigError, never aborts."""
    with pytest.raises(llamakit.ConfigError):
        call(ctx.kv)


def test_perf_counters(ctx: llamakit.Context) -> None:
    """perf() counts the evaluated tokens; reset_perf() zeroes them."""
    ctx.generate("Hello world", max_new_tokens=5, temperature=0)
    counters = ctx.perf()
    assert counters["n_p_eval"] == 3 and counters["n_eval"] == 4
    assert counters["t_eval_ms"] > 0
    ctx.reset_perf()
    assert ctx.perf()["n_eval"] == 0 and ctx.perf()["n_p_eval"] == 0


def test_kv_after_close_raises(model: llamakit.Model) -> None:
    """The KV view of a closed context raises ClosedError."""
    context = model.new_context(n_ctx=32)
    kv = context.kv
    context.close()
    with pytest.raises(llamakit.ClosedError):
        kv.seq_pos_max(0)
    with pytest.raises(llamakit.ClosedError):
        context.kv  # noqa: B018
