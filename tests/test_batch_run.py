"""generate_batch's steady state in native runs (``BatchRun``, native/lk_batch_run.cpp):
the same tokens, text, finish reasons and memory as the Python steps (``stream_batch``),
whatever ends a sequence, and safe against bad arguments, cancel and Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import llamakit
from llamakit._batch import BatchSlot, BatchStepper
from llamakit._context_text import TextAssembler
from llamakit._native import batch_run
from llamakit._native.batch_run import BatchRun
from llamakit._sampler_chain import SamplerChain
from tests.hardening.test_cancel import _when_decoding

PROMPTS = ["Hello world", "The quick brown fox", "Once upon a time", "In the beginning",
           "A B C", "What is the capital of France?", "1 2 3 4", "Good morning"]


@pytest.fixture
def bctx(model: llamakit.Model) -> Iterator[llamakit.Context]:
    with model.new_context(n_ctx=1024, n_batch=64, n_seq_max=4, n_threads=2) as context:
        yield context


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The whole steps of every native run, in order."""
    steps: list[int] = []
    original = BatchRun.run

    def run(self: BatchRun, *args: Any, **kwargs: Any) -> Any:
        done, seqs, error = original(self, *args, **kwargs)
        steps.append(done)
        return done, seqs, error

    monkeypatch.setattr(BatchRun, "run", run)
    return steps


def _streamed(ctx: llamakit.Context, prompts: list[Any], **kwargs: Any
              ) -> list[llamakit.GenerationResult]:
    stream = ctx.stream_batch(prompts, **kwargs)
    for _ in stream:
        pass
    return stream.results


def _same(a: list[llamakit.GenerationResult], b: list[llamakit.GenerationResult]) -> None:
    assert [r.tokens for r in a] == [r.tokens for r in b]
    assert [r.text for r in a] == [r.text for r in b]
    assert [r.finish_reason for r in a] == [r.finish_reason for r in b]
    assert [r.timings.generated_tokens for r in a] == [r.timings.generated_tokens for r in b]


@pytest.mark.parametrize("ahead", [False, True])
def test_runs_equal_python_steps_and_one_by_one(model: llamakit.Model, bctx: llamakit.Context,
                                                runs: list[int],
                                                monkeypatch: pytest.MonkeyPatch,
                                                ahead: bool) -> None:
    """Greedy and seeded sampling, more prompts than sequences: generate_batch (native
    runs; ``ahead``: a CUDA model's order, each run's last decode started before it
    returns) gives stream_batch's results (a Python step each) and, greedy, generate's."""
    monkeypatch.setattr("llamakit._batch.starts_ahead", lambda model: ahead)
    greedy = bctx.generate_batch(PROMPTS, max_new_tokens=12, temperature=0)
    assert runs and max(runs) > 1
    _same(greedy, _streamed(bctx, PROMPTS, max_new_tokens=12, temperature=0))
    with model.new_context(n_ctx=256, n_threads=2) as single:
        assert [r.tokens for r in greedy] == [
            single.generate(p, max_new_tokens=12, temperature=0).tokens for p in PROMPTS]
    seeded = bctx.generate_batch(PROMPTS[:6], max_new_tokens=16, temperature=0.9, top_k=40,
                                 top_p=0.9, seed=7)
    _same(seeded, _streamed(bctx, PROMPTS[:6], max_new_tokens=16, temperature=0.9,
                            top_k=40, top_p=0.9, seed=7))
    assert bctx.kv.seq_pos_max(0) == -1  # generate_batch leaves the memory empty


def test_sequences_ending_apart(model: llamakit.Model, bctx: llamakit.Context,
                                runs: list[int]) -> None:
    """Sequences that end at different steps (end-of-generation made likely for some, the
    budget, the context's end) end the run each time; the others go on in the next."""
    eos = model.eos_token
    assert eos is not None
    bias = {eos: 1.0}
    kwargs: dict[str, Any] = {"max_new_tokens": 40, "temperature": 0.8, "seed": 3,
                              "logit_bias": bias}
    results = bctx.generate_batch(PROMPTS, **kwargs)
    _same(results, _streamed(bctx, PROMPTS, **kwargs))
    reasons = {r.finish_reason for r in results}
    assert "eog" in reasons, reasons
    assert "length" in reasons and len({len(r.tokens) for r in results}) > 4
    # the context per sequence ends generation: "length" at n_ctx_seq
    with model.new_context(n_ctx=96, n_batch=64, n_seq_max=4, n_threads=2) as small:
        ban = {t: float("-inf") for t in range(model.n_vocab) if model.is_eog(t)}
        long_prompts = [PROMPTS[i] * (1 + i) for i in range(4)]
        kwargs = {"max_new_tokens": 500, "temperature": 0, "logit_bias": ban}
        ended = small.generate_batch(long_prompts, **kwargs)
        _same(ended, _streamed(small, long_prompts, **kwargs))
        for result in ended:
            assert result.finish_reason == "length"
            assert len(result.prompt_tokens) + len(result.tokens) == small._handle.n_ctx_seq + 1


def test_small_runs_and_pieces_that_do_not_fit(bctx: llamakit.Context, runs: list[int],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A run ends after RUN_STEPS steps or when a sequence's piece does not fit its bytes
    (the piece is then read in Python): the results do not change."""
    expected = _streamed(bctx, PROMPTS, max_new_tokens=20, temperature=0)
    monkeypatch.setattr(batch_run, "RUN_STEPS", 3)
    _same(bctx.generate_batch(PROMPTS, max_new_tokens=20, temperature=0), expected)
    assert max(runs) == 3
    runs.clear()
    monkeypatch.setattr(batch_run, "RUN_STEPS", 256)
    monkeypatch.setattr(batch_run, "RUN_PIECE_BYTES", 5)
    _same(bctx.generate_batch(PROMPTS, max_new_tokens=20, temperature=0), expected)
    assert len(runs) >= 8  # two alone, six together


def _slots(model: llamakit.Model, ctx: llamakit.Context, prompts: list[list[int]],
           limit: int, stop_tokens: frozenset[int], preserved: frozenset[int],
           sampling: dict[str, Any]) -> list[BatchSlot]:
    slots = []
    for i, prompt in enumerate(prompts):
        chain = SamplerChain.from_stages(model, ctx._sampling(sampling, "test")
                                         .stages(0, ctx.n_ctx))
        slots.append(BatchSlot(seq_id=i, prompt=prompt, chain=chain,
                               assembler=TextAssembler([]), limit=limit, seed=0,
                               started=0.0, stop_tokens=stop_tokens,
                               preserved_tokens=preserved))
    return slots


def _step_all(model: llamakit.Model, ctx: llamakit.Context, prompts: list[list[int]],
              limit: int, stop_tokens: frozenset[int], preserved: frozenset[int],
              native: bool, **sampling: Any
              ) -> list[tuple[list[int], str, str | None, list[int]]]:
    stepper = BatchStepper(ctx._handle, model._handle, ahead=True)
    # pieces False: generate_batch's stepper, whose steady state runs in C
    stepper.pieces = not native
    slots = _slots(model, ctx, prompts, limit, stop_tokens, preserved,
                   {"temperature": 0, **sampling})
    try:
        for slot in slots:
            stepper.add(slot)
        while stepper.active:
            stepper.step()
        stepper.drain()
        held = [ctx.kv.seq_pos_max(slot.seq_id) + 1 for slot in slots]
        assert held == [len(slot.kv) for slot in slots]
        for slot in slots:
            slot.assembler.finish()
        return [(slot.generated, slot.assembler.text, slot.finish, slot.kv) for slot in slots]
    finally:
        stepper.close()
        for slot in slots:
            slot.chain.close()
        ctx.kv.clear()


def test_stop_tokens_and_preserved_tokens_as_python(model: llamakit.Model,
                                                    bctx: llamakit.Context) -> None:
    """A slot's stop tokens (a chat template's end-of-turn) end it as end-of-generation
    does, its preserved tokens' pieces are rendered special, as the Python step does; the
    memory holds every decoded token (``slot.kv``)."""
    prompts = [bctx.tokenize(p) for p in PROMPTS[:4]]
    free = _step_all(model, bctx, prompts, 12, frozenset(), frozenset(), native=False)
    generated = [t for tokens, *_ in free for t in tokens]
    # a token the second sequence generates at its fifth step ends it; another is preserved
    stop = frozenset({free[1][0][4], -5, 1 << 40})
    preserved = frozenset({free[2][0][3], free[0][0][1]})
    assert generated
    python = _step_all(model, bctx, prompts, 12, stop, preserved, native=False)
    native = _step_all(model, bctx, prompts, 12, stop, preserved, native=True)
    assert native == python
    ends = next(i for i, token in enumerate(free[1][0]) if token in stop)
    assert python[1][2] == "eog" and python[1][0] == free[1][0][:ends]
    # a control token made certain: rendered (special) only where preserved
    bos = model.bos_token
    assert bos is not None
    forced = {"logit_bias": {bos: 100.0}}
    python = _step_all(model, bctx, prompts, 5, frozenset(), frozenset({bos}), native=False,
                       **forced)
    native = _step_all(model, bctx, prompts, 5, frozenset(), frozenset({bos}), native=True,
                       **forced)
    assert native == python
    plain = _step_all(model, bctx, prompts, 5, frozenset(), frozenset(), native=True, **forced)
    assert [text for _, text, *_ in plain] != [text for _, text, *_ in native]
    assert all(tokens == [bos] * 5 for tokens, *_ in native)


def test_hostile_run_arguments_are_refused(model: llamakit.Model,
                                           bctx: llamakit.Context) -> None:
    """No sequences, more than the batch holds, a sequence without a budget or an output
    row: a typed error, not a crash."""
    from llamakit._native.batch import BatchHandle
    handle = bctx._handle
    batch = BatchHandle(handle.native, 4)
    runner = BatchRun(handle, batch, 4)
    chain = SamplerChain.from_stages(model, bctx._sampling({"temperature": 0}, "test")
                                     .stages(0, bctx.n_ctx))
    try:
        with pytest.raises(llamakit.ContextError):
            runner.run([], [], [], [], [], [], [], 4, False)
        with pytest.raises(llamakit.ContextError):
            runner.run([chain._handle] * 5, [0] * 5, list(range(5)), [0] * 5, [1] * 5,
                       [frozenset()] * 5, [frozenset()] * 5, 4, False)
        bctx.kv.clear()
        batch.fill(bctx.tokenize("Hello"), list(range(len(bctx.tokenize("Hello")))),
                   [0] * len(bctx.tokenize("Hello")), [0] * (len(bctx.tokenize("Hello")) - 1)
                   + [1])
        batch.decode(handle)
        for budget, row in [(0, 0), (3, -1)]:
            done, seqs, error = runner.run([chain._handle], [row], [0], [5], [budget],
                                           [frozenset()], [frozenset()], 4, False)
            assert done == 0 and isinstance(error, llamakit.SamplerError)
        # a row the last decode has no logits for: the sampler's error
        done, seqs, error = runner.run([chain._handle], [3], [0], [5], [4], [frozenset()],
                                       [frozenset()], 4, False)
        assert done == 0 and isinstance(error, llamakit.SamplerError)
    finally:
        chain.close()
        batch.close()
        bctx.kv.clear()
    assert bctx.generate("Hello", max_new_tokens=3, temperature=0).tokens


@pytest.mark.parametrize("how", ["cancel", "ctrl-c"])
def test_a_run_stops_for_cancel_and_ctrl_c(model: llamakit.Model, how: str) -> None:
    """cancel() (AbortedError) and Ctrl-C (KeyboardInterrupt) stop a batch run at the next
    step; the context goes on."""
    main = threading.main_thread().ident
    assert main is not None
    ban = {t: float("-inf") for t in range(model.n_vocab) if model.is_eog(t)}
    with model.new_context(n_ctx=4096, n_batch=64, n_seq_max=4, n_threads=1) as ctx:
        action = (lambda: signal.pthread_kill(main, signal.SIGINT)) if how == "ctrl-c" \
            else ctx.cancel
        expected = KeyboardInterrupt if how == "ctrl-c" else llamakit.AbortedError
        for _ in range(5):  # the batch may end before the action lands; try again
            done = threading.Event()
            thread = _when_decoding(action, done, frames=("BatchRun.run",))
            try:
                ctx.generate_batch(PROMPTS[:4], max_new_tokens=1000, temperature=0,
                                   logit_bias=ban)
            except expected:
                break
            finally:
                done.set()
                thread.join()
                time.sleep(0.05)
        else:
            pytest.fail("the batch always finished first")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        results = ctx.generate_batch(PROMPTS[:2], max_new_tokens=4, temperature=0)
        assert [len(r.tokens) for r in results] == [4, 4]


def test_close_during_a_run_waits_for_it(model: llamakit.Model) -> None:
    """Closing the context from another thread while a run is in C stops it at its next
    step (the close's abort flag) and waits for the call (the run holds the context, its
    batch and every chain): an AbortedError or ClosedError, no crash."""
    ban = {t: float("-inf") for t in range(model.n_vocab) if model.is_eog(t)}
    ctx = model.new_context(n_ctx=4096, n_batch=64, n_seq_max=4, n_threads=1)
    done = threading.Event()
    thread = _when_decoding(ctx.close, done, frames=("BatchRun.run",))
    try:
        with pytest.raises((llamakit.ClosedError, llamakit.AbortedError)):
            ctx.generate_batch(PROMPTS[:4], max_new_tokens=2000, temperature=0,
                               logit_bias=ban)
    finally:
        done.set()
        thread.join()
        ctx.close()


def test_runs_on_two_contexts_in_two_threads(model: llamakit.Model, runs: list[int]) -> None:
    """Two contexts of one model run generate_batch's native runs at the same time (each
    run spreads its sampling over threads too): each gets what it gets alone."""
    kwargs: dict[str, Any] = {"max_new_tokens": 24, "temperature": 0.7, "seed": 11}
    with model.new_context(n_ctx=1024, n_batch=64, n_seq_max=4, n_threads=2) as first, \
            model.new_context(n_ctx=1024, n_batch=64, n_seq_max=4, n_threads=2) as second:
        alone = [first.generate_batch(PROMPTS[:4], **kwargs),
                 second.generate_batch(PROMPTS[4:], **kwargs)]
        together: list[Any] = [None, None]
        errors: list[BaseException] = []

        def work(i: int, ctx: llamakit.Context, prompts: list[str]) -> None:
            try:
                for _ in range(3):
                    together[i] = ctx.generate_batch(prompts, **kwargs)
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=work, args=(0, first, PROMPTS[:4])),
                   threading.Thread(target=work, args=(1, second, PROMPTS[4:]))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    for got, expected in zip(together, alone, strict=True):
        _same(got, expected)
    assert len(runs) >= 8  # two alone, six together


def test_sequences_that_end_leave_no_gap(model: llamakit.Model,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """When a sequence in the middle ends and no prompt is queued, the sequences above it
    move down (``BatchStepper.compact``: llama.cpp puts only consecutive sequence ids in
    one ubatch): every later batch holds ids 0..n-1, and every sequence gives the tokens
    it gives without the moves, and alone."""
    from llamakit._batch import BatchStepper
    from llamakit._native import memory
    from llamakit._native.batch import BatchHandle
    kwargs: dict[str, Any] = {"max_new_tokens": 40, "temperature": 0.8, "seed": 3,
                              "logit_bias": {model.eos_token: 1.0}}
    moves: list[tuple[int, int]] = []
    original_copy = memory.kv_copy

    def kv_copy(ctx: Any, src: int, dst: int, p0: int, p1: int) -> None:
        moves.append((src, dst))
        original_copy(ctx, src, dst, p0, p1)

    fills: list[list[int]] = []
    original_fill = BatchHandle.fill

    def fill(self: BatchHandle, tokens: Any, positions: Any, seq_ids: Any,
             outputs: Any) -> None:
        fills.append(list(seq_ids))
        original_fill(self, tokens, positions, seq_ids, outputs)

    # the batch each native run decoded last (lk_batch_run writes the stepper's llama_batch)
    original_run = BatchRun.run

    def run(self: BatchRun, *args: Any, **kwargs: Any) -> Any:
        out = original_run(self, *args, **kwargs)
        batch = self._batch.ptr
        fills.append([batch.seq_id[i][0] for i in range(batch.n_tokens)])
        return out

    monkeypatch.setattr(memory, "kv_copy", kv_copy)
    monkeypatch.setattr(BatchHandle, "fill", fill)
    monkeypatch.setattr(BatchRun, "run", run)
    with model.new_context(n_ctx=1024, n_batch=64, n_seq_max=8, n_threads=2) as ctx:
        moved = ctx.generate_batch(PROMPTS, **kwargs)
        streamed = _streamed(ctx, PROMPTS, **kwargs)
        assert moves
        # every batch of generated tokens (Python's and the runs'), once a move was made
        # for it: ids 0..n-1 in that order, one ubatch
        for seq_ids in fills:
            if len(set(seq_ids)) == len(seq_ids):  # generated tokens only
                assert seq_ids == list(range(len(seq_ids))), seq_ids
        monkeypatch.setattr(BatchStepper, "compact", lambda self, free: None)
        kept = ctx.generate_batch(PROMPTS, **kwargs)
    _same(moved, kept)
    _same(streamed, kept)
    lengths = [len(r.tokens) for r in kept]
    assert len(set(lengths)) > 3 and min(lengths) < max(lengths)
    with model.new_context(n_ctx=256, n_threads=2) as single:
        for i, (prompt, result) in enumerate(zip(PROMPTS, kept, strict=True)):
            alone = single.generate(prompt, **{**kwargs, "seed": 3 + i})
            assert alone.tokens == result.tokens
            single.reset()


@pytest.mark.parametrize("ahead", [False, True])
def test_streams_step_in_c_one_token_a_step(model: llamakit.Model, bctx: llamakit.Context,
                                            runs: list[int], monkeypatch: pytest.MonkeyPatch,
                                            ahead: bool) -> None:
    """stream_batch (and the engine) run one step a native call: every sequence's pieces,
    one event a token as the Python step makes them, the same results."""
    monkeypatch.setattr("llamakit._batch.starts_ahead", lambda model: ahead)

    def pieces() -> tuple[dict[int, list[str]], list[llamakit.GenerationResult]]:
        by_index: dict[int, list[str]] = {}
        stream = bctx.stream_batch(PROMPTS, max_new_tokens=12, temperature=0.7, seed=2)
        for index, piece in stream:
            by_index.setdefault(index, []).append(piece)
        return by_index, stream.results

    native, native_results = pieces()
    assert runs and set(runs) == {1}
    monkeypatch.setattr(BatchStepper, "_runnable", lambda self: False)
    python, python_results = pieces()
    assert native == python
    _same(native_results, python_results)
    assert max(len(p) for p in native.values()) > 5  # a piece a token, not one a run


_HOSTILE_RUN = '''
import sys
import llamakit
from llamakit._native.batch import BatchHandle
from llamakit._native.batch_run import BatchRun
from llamakit._sampler_chain import SamplerChain

with llamakit.load_model(sys.argv[1], backend="cpu") as model, \\
        model.new_context(n_ctx=256, n_batch=16, n_seq_max=4, n_threads=1) as ctx:
    h = ctx._handle
    stages = ctx._sampling({"temperature": 0}, "test").stages(0, 256)
    chain = SamplerChain.from_stages(model, stages)._handle
    other = SamplerChain.from_stages(model, stages)._handle
    toks = ctx.tokenize("Hello world")
    n = len(toks)
    cases = {  # chains, rows, sequence ids, positions, budgets
        "seq_out_of_range": ([chain], [n - 1], [4], [n], [3]),
        "seq_negative": ([chain], [n - 1], [-1], [n], [3]),
        "seq_int32_max": ([chain], [n - 1], [2**31 - 1], [n], [3]),
        "pos_jump": ([chain], [n - 1], [0], [n + 50], [3]),
        "pos_back": ([chain], [n - 1], [0], [0], [3]),
        "pos_negative": ([chain], [n - 1], [0], [-5], [3]),
        "pos_int32_max": ([chain], [n - 1], [0], [2**31 - 2], [3]),
        "row_huge": ([chain], [10**6], [0], [n], [3]),
        "row_negative": ([chain], [-7], [0], [n], [3]),
        "same_seq_twice": ([chain, other], [n - 1, 2 * n - 1], [0, 0], [n, n], [3, 3]),
        "same_chain_twice": ([chain, chain], [n - 1, 2 * n - 1], [0, 1], [n, n], [3, 3]),
        "budget_int32_max": ([chain], [n - 1], [0], [n], [2**31 - 1]),
    }
    for name, (chains, rows, seqs, positions, budgets) in cases.items():
        h.clear_memory()
        batch = BatchHandle(h.native, 16)
        batch.fill(toks + toks, list(range(n)) * 2, [0] * n + [1] * n,
                   [0] * (n - 1) + [1] + [0] * (n - 1) + [1])
        batch.decode(h)
        runner = BatchRun(h, batch, 4)
        done, _, error = runner.run(chains, rows, seqs, positions, budgets,
                                    [frozenset()] * len(chains), [frozenset()] * len(chains),
                                    300, True)
        h.synchronize()
        batch.close()
        print(name, done, type(error).__name__ if error else None, flush=True)
    print("ok")
'''


def test_hostile_run_arguments_in_a_subprocess(tiny_model_path: Any) -> None:
    """Sequence ids and positions llama.cpp refuses, output rows it has no logits for, a
    sequence or a chain twice, an int32-sized budget, given to ``BatchRun`` itself: a typed
    error from the run (or a run that holds up), never a crash (a crash kills only the
    child, which the test reports)."""
    proc = subprocess.run([sys.executable, "-c", _HOSTILE_RUN, str(tiny_model_path)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode < 0:
        pytest.fail(f"the process died by {signal.Signals(-proc.returncode).name}:\n"
                    f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "ok"
    outcome = {line.split()[0]: line.split()[1:] for line in lines[:-1]}
    for name in ("seq_out_of_range", "seq_negative", "seq_int32_max", "pos_jump", "pos_back",
                 "pos_negative", "pos_int32_max"):
        assert outcome[name] == ["1", "InvalidBatchError"], (name, outcome[name])
    for name in ("row_huge", "row_negative"):
        assert outcome[name] == ["0", "SamplerError"], (name, outcome[name])
    assert outcome["budget_int32_max"][1] in ("KVCacheFullError", "None")
