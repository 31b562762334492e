"""Cancellation: Ctrl-C and Context.cancel() stop a decode through llama.cpp's abort flag and
leave the context usable, its KV cache consistent with what it remembers."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import llamakit
from llamakit._native.status import DECODE_STATUSES, raise_for_decode

N_UBATCH = 16
PROMPT = [1] + [(i * 7919) % 31000 + 100 for i in range(1000)]


@pytest.fixture
def long_ctx(model: llamakit.Model) -> Iterator[llamakit.Context]:
    """A context whose prompt decode is one llama_decode call of many micro-batches."""
    with model.new_context(n_ctx=1024, n_batch=1024, n_ubatch=N_UBATCH, n_threads=1,
                           deterministic=False) as ctx:
        yield ctx


def _when_decoding(action: Callable[[], None], done: threading.Event,
                   delay: float = 0.0,
                   frames: tuple[str, ...] = ("_evaluate", "TokenRun.run")
                   ) -> threading.Thread:
    """A thread that runs ``action`` ``delay`` seconds after the main thread entered a
    llama_decode call.

    The main thread releases the GIL only in C, so seeing its frame in the handle's
    ``_evaluate`` (or ``TokenRun.run``, generate's native token loop; ``frames``: the
    qualified names to wait for) from here means the call is (almost always) under way.
    """
    main = threading.main_thread().ident
    assert main is not None

    def wait_then_act() -> None:
        while not done.is_set():
            frame = sys._current_frames().get(main)
            if frame is not None and frame.f_code.co_qualname in frames:
                done.wait(delay)
                action()
                return
            time.sleep(0.0005)

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.start()
    return thread


def _held(ctx: llamakit.Context) -> int:
    return ctx._handle.pos_max(0) + 1


def _assert_consistent_and_usable(ctx: llamakit.Context, model: llamakit.Model) -> None:
    held = _held(ctx)
    assert len(ctx._past) == held
    assert ctx._past == PROMPT[:held]
    again = ctx.generate(PROMPT, max_new_tokens=4, temperature=0)
    assert again.timings.prompt_tokens_cached == min(held, len(PROMPT) - 1)
    with model.new_context(n_ctx=1024, n_batch=1024, n_ubatch=N_UBATCH, n_threads=1,
                           deterministic=False) as fresh:
        assert fresh.generate(PROMPT, max_new_tokens=4, temperature=0).tokens == again.tokens


def _interrupt_prompt(ctx: llamakit.Context, action: Callable[[], None],
                      expected: type[BaseException]) -> int:
    """Run the long prompt with ``action`` fired mid-decode; returns the tokens held.

    Later attempts fire later into the decode, so that (on most machines) some micro-batches
    are finished when it stops; the first attempt that stops part-way wins.
    """
    interrupted = []
    for delay in (0.0, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.0, 0.0, 0.0):
        ctx.reset()
        done = threading.Event()
        try:
            thread = _when_decoding(action, done, delay)
            try:
                ctx.generate(PROMPT, max_new_tokens=1, temperature=0)
            finally:
                done.set()
                thread.join()
            time.sleep(0.05)  # a signal sent just after the decode is raised in here
        except expected:
            held = _held(ctx)
            if held < len(PROMPT):
                interrupted.append(held)
                if held > 0:
                    break
    if not interrupted:
        pytest.fail("the decode always finished before it could be interrupted")
    return interrupted[-1]


def test_ctrl_c_stops_a_long_prompt_within_a_micro_batch(long_ctx: llamakit.Context,
                                                         model: llamakit.Model) -> None:
    """Ctrl-C mid-prompt raises KeyboardInterrupt, keeping whole micro-batches cached and usable."""
    main = threading.main_thread().ident
    assert main is not None
    held = _interrupt_prompt(long_ctx, lambda: signal.pthread_kill(main, signal.SIGINT),
                             KeyboardInterrupt)
    assert held % N_UBATCH == 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    _assert_consistent_and_usable(long_ctx, model)


def test_cancel_from_another_thread_stops_a_long_prompt(long_ctx: llamakit.Context,
                                                        model: llamakit.Model) -> None:
    """cancel() from another thread aborts a prompt decode, keeping whole micro-batches."""
    held = _interrupt_prompt(long_ctx, long_ctx.cancel, llamakit.AbortedError)
    assert held % N_UBATCH == 0
    _assert_consistent_and_usable(long_ctx, model)


def test_cancel_between_prompt_batches_keeps_the_finished_ones(
        model: llamakit.Model, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancel before the third n_batch chunk of a prompt keeps exactly two chunks cached."""
    from llamakit._native.context import ContextHandle

    calls = []
    evaluate = ContextHandle._evaluate

    def counting(self: ContextHandle, batch: object, *, encode: bool) -> int:
        calls.append(1)
        if len(calls) == 3:
            self.set_abort(True)
        return evaluate(self, batch, encode=encode)

    with model.new_context(n_ctx=1024, n_batch=64, n_ubatch=N_UBATCH, n_threads=1,
                           deterministic=False) as ctx:
        monkeypatch.setattr(ContextHandle, "_evaluate", counting)
        with pytest.raises(llamakit.AbortedError):
            ctx.generate(PROMPT, max_new_tokens=1, temperature=0)
        monkeypatch.undo()
        assert _held(ctx) == len(ctx._past) == 2 * 64
        rerun = ctx.generate(PROMPT, max_new_tokens=2, temperature=0)
        assert rerun.timings.prompt_tokens_cached == 2 * 64


def test_cancel_during_generation_stops_within_one_token(long_ctx: llamakit.Context) -> None:
    """A cancel between streamed pieces aborts the next token's decode; the rest stays cached."""
    stream = long_ctx.stream("Once upon a time", max_new_tokens=50, temperature=0)
    pieces = []
    with pytest.raises(llamakit.AbortedError):
        for piece in stream:
            pieces.append(piece)
            if len(pieces) == 3:
                long_ctx.cancel()
    assert len(pieces) == 3
    assert len(long_ctx._past) == _held(long_ctx)
    prompt = long_ctx.tokenize("Once upon a time")
    assert long_ctx._past[:len(prompt)] == prompt
    rerun = long_ctx.generate("Once upon a time", max_new_tokens=5, temperature=0)
    assert rerun.timings.prompt_tokens_cached == len(prompt) - 1


def test_cancel_from_another_thread_during_generation(long_ctx: llamakit.Context) -> None:
    """cancel() from another thread aborts a long generation and keeps the cache consistent."""
    done = threading.Event()
    long_ctx.generate("Hi", max_new_tokens=1)  # the prompt is cached: later decodes are tokens
    thread = _when_decoding(long_ctx.cancel, done)
    try:
        with pytest.raises(llamakit.AbortedError):
            long_ctx.generate("Hi", max_new_tokens=900, temperature=0)
    finally:
        done.set()
        thread.join()
    assert len(long_ctx._past) == _held(long_ctx)
    assert long_ctx.generate("Hi", max_new_tokens=3, temperature=0).tokens


def test_cancel_before_a_call_is_forgotten(long_ctx: llamakit.Context) -> None:
    """cancel() only stops a running call: the next call runs to the end; abort is an alias."""
    long_ctx.cancel()
    assert len(long_ctx.generate("Hi", max_new_tokens=3, temperature=0).tokens) == 3
    assert llamakit.Context.abort is llamakit.Context.cancel


def test_an_application_sigint_handler_keeps_control(long_ctx: llamakit.Context) -> None:
    """With the application's own SIGINT handler, Ctrl-C does not abort the decode."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        main = threading.main_thread().ident
        assert main is not None
        done = threading.Event()
        thread = _when_decoding(lambda: signal.pthread_kill(main, signal.SIGINT), done)
        try:
            result = long_ctx.generate(PROMPT, max_new_tokens=2, temperature=0)
        finally:
            done.set()
            thread.join()
        time.sleep(0.05)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == [signal.SIGINT]
    assert result.timings.prompt_tokens == len(PROMPT) and len(result.tokens) == 2


def test_decode_statuses_map_to_distinct_errors() -> None:
    """llama_decode's 1, 2, -1 and < -1 raise four different DecodeError subclasses."""
    raised = {}
    for status in (1, 2, -1, -2, -3, -9):
        with pytest.raises(llamakit.DecodeError) as info:
            raise_for_decode(status)
        raised[status] = type(info.value)
    assert raised[1] is llamakit.KVCacheFullError
    assert raised[2] is llamakit.AbortedError
    assert raised[-1] is llamakit.InvalidBatchError
    assert raised[-2] is raised[-3] is raised[-9] is llamakit.ComputeError
    assert len({raised[1], raised[2], raised[-1], raised[-2]}) == 4
    assert set(DECODE_STATUSES) >= {1, 2, -1, -2, -3}


def test_failed_decodes_leave_the_cache_as_remembered(model: llamakit.Model) -> None:
    """A full KV cache or an invalid batch leaves the cache as the context remembers it."""
    with model.new_context(n_ctx=256, n_batch=256, n_ubatch=N_UBATCH, n_threads=1,
                           deterministic=False) as ctx:
        ctx.generate(PROMPT[:200], max_new_tokens=1, temperature=0)
        handle = ctx._handle
        with pytest.raises(llamakit.KVCacheFullError):
            handle.decode([100] * 100)
        with pytest.raises(llamakit.InvalidBatchError):
            handle.decode([10**6])
        with pytest.raises(llamakit.InvalidBatchError):
            handle.decode([100] * 300)
        assert len(ctx._past) == _held(ctx) == 200
        assert ctx.generate(PROMPT[:200], max_new_tokens=2, temperature=0).timings \
            .prompt_tokens_cached == 199


@pytest.mark.parametrize("how", ["ctrl-c", "cancel"])
def test_a_native_token_run_stops_for_ctrl_c_and_cancel(ctx: llamakit.Context,
                                                        how: str) -> None:
    """Ctrl-C (KeyboardInterrupt) and cancel() (AbortedError) stop generate's native token
    run (``TokenRun``) at the next token; what was decoded stays held as known, and the
    context goes on."""
    main = threading.main_thread().ident
    assert main is not None
    action = (lambda: signal.pthread_kill(main, signal.SIGINT)) if how == "ctrl-c" \
        else ctx.cancel
    expected = KeyboardInterrupt if how == "ctrl-c" else llamakit.AbortedError
    prompt = "Once upon a time"
    # every end-of-generation token banned: the run goes on until the action stops it
    ban = {t: float("-inf") for t in range(ctx.model.n_vocab) if ctx.model.is_eog(t)}
    ctx.deterministic = False
    for _ in range(5):  # the run may end before the action lands; try again
        ctx.reset()
        done = threading.Event()
        thread = _when_decoding(action, done, frames=("TokenRun.run",))
        try:
            ctx.generate(prompt, max_new_tokens=20000 // 8, temperature=0,
                         logit_bias=ban, on_overflow="shift")
        except expected:
            break
        finally:
            done.set()
            thread.join()
            time.sleep(0.05)
    else:
        pytest.fail("the generation always finished first")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert len(ctx._past) == _held(ctx)
    assert len(ctx._past) < len(ctx.tokenize(prompt)) + 2500
    assert len(ctx.generate(prompt, max_new_tokens=3, temperature=0).tokens) == 3
