"""Batch inference: shared decodes equal one-by-one results, queueing, packed embeddings,
and one model used by many threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

import llamakit
from llamakit import SamplerChain
from llamakit._batch import BatchSlot, BatchStepper
from llamakit._context_text import TextAssembler

PROMPTS = ["Hello world", "The quick brown fox", "Once upon a time", "In the beginning",
           "A B C", "What is the capital of France?", "1 2 3 4", "Good morning"]


@pytest.fixture
def bctx(model: llamakit.Model) -> Iterator[llamakit.Context]:
    with model.new_context(n_ctx=1024, n_batch=64, n_seq_max=4, n_threads=2) as context:
        yield context


def _one_by_one(model: llamakit.Model, prompts: list[str], n: int) -> list[list[int]]:
    with model.new_context(n_ctx=256, n_threads=2) as ctx:
        return [ctx.generate(p, max_new_tokens=n, temperature=0).tokens for p in prompts]


def test_batch_equals_one_by_one(model: llamakit.Model, bctx: llamakit.Context) -> None:
    """Greedy batch results equal single-sequence results token for token, in order."""
    results = bctx.generate_batch(PROMPTS[:4], max_new_tokens=12, temperature=0)
    assert [r.tokens for r in results] == _one_by_one(model, PROMPTS[:4], 12)
    assert [r.prompt_tokens for r in results] == [model.tokenize(p) for p in PROMPTS[:4]]


def test_more_prompts_than_slots_are_queued(model: llamakit.Model,
                                            bctx: llamakit.Context) -> None:
    """Eight prompts on four slots all complete, each equal to its single result."""
    results = bctx.generate_batch(PROMPTS, max_new_tokens=6, temperature=0)
    assert len(results) == 8
    assert [r.tokens for r in results] == _one_by_one(model, PROMPTS, 6)


def test_batches_are_filled_in_sequence_order(model: llamakit.Model,
                                              bctx: llamakit.Context,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Every decode lists its sequences in ascending id order, also once slots were
    reused out of order (with a KV stream per sequence llama.cpp splits a batch into
    ubatches of consecutive sequences: 2, 3, 0, 1 would cost two graph computes)."""
    from llamakit._native.batch import BatchHandle
    added: list[list[int]] = []
    original_fill = BatchHandle.fill

    def fill(self: BatchHandle, tokens: list[int], positions: list[int],
             seq_ids: list[int], outputs: list[int]) -> None:
        added.append(list(seq_ids))
        original_fill(self, tokens, positions, seq_ids, outputs)

    monkeypatch.setattr(BatchHandle, "fill", fill)
    handle = bctx._handle
    stepper = BatchStepper(handle, model._handle)
    try:
        for seq_id in (2, 3, 0, 1):  # the order an engine may hand slots out
            prompt = model.tokenize(PROMPTS[seq_id])
            stepper.add(BatchSlot(seq_id=seq_id, prompt=prompt,
                                  chain=SamplerChain(model).add_greedy(),
                                  assembler=TextAssembler([]), limit=3, seed=0, started=0.0))
        while stepper.active:
            stepper.step()
    finally:
        stepper.close()
        bctx.kv.clear()
    assert len(added) == 3  # the prompts (and first tokens), then two generated tokens
    for ids in added:
        assert ids == sorted(ids), ids
    assert sorted(set(added[-1])) == [0, 1, 2, 3]


@pytest.mark.parametrize("ahead", [False, True])
@pytest.mark.parametrize("n_prompt", [32, 24])
def test_generate_batch_feeds_prompts_before_stepping(model: llamakit.Model,
                                                      bctx: llamakit.Context,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      ahead: bool, n_prompt: int) -> None:
    """When the prompts overflow one batch, generate_batch feeds them all before any
    generated token, then steps every sequence together (llama-batched-bench's pattern):
    no decode mixes the two (ragged ubatches with a KV stream per sequence), none runs
    part-full at the end. stream_batch still lets its first sequences generate early."""
    from llamakit._native.batch import BatchHandle
    fills: list[tuple[list[int], list[int]]] = []
    original_fill = BatchHandle.fill

    def fill(self: BatchHandle, tokens: list[int], positions: list[int],
             seq_ids: list[int], outputs: list[int]) -> None:
        fills.append((list(seq_ids), list(positions)))
        original_fill(self, tokens, positions, seq_ids, outputs)

    monkeypatch.setattr(BatchHandle, "fill", fill)
    monkeypatch.setattr("llamakit._batch.starts_ahead", lambda model: ahead)
    # every step through Python's BatchHandle.fill (the native runs of generate_batch's
    # steady state write the batch in C: tests/test_batch_run.py)
    monkeypatch.setattr("llamakit._batch.BatchStepper._runnable", lambda self: False)
    # four prompts through a batch of 64: 128 tokens (the rest overflows the second
    # decode) or 96 (it fits, but the third prompt was cut by the first decode's end)
    prompts = [[100 + 7 * i + j for j in range(n_prompt)] for i in range(4)]
    results = bctx.generate_batch(prompts, max_new_tokens=5, temperature=0)
    with model.new_context(n_ctx=256, n_threads=2) as single:
        expected = [single.generate(p, max_new_tokens=5, temperature=0).tokens
                    for p in prompts]
    assert [r.tokens for r in results] == expected
    sizes = [len(seq_ids) for seq_ids, _ in fills]
    assert sizes == [64, 4 * n_prompt - 64, 4, 4, 4, 4]
    assert all(position < n_prompt for _, positions in fills[:2] for position in positions)
    for seq_ids, positions in fills[2:]:
        assert seq_ids == [0, 1, 2, 3] and len(set(positions)) == 1
    fills.clear()
    stream = bctx.stream_batch(prompts, max_new_tokens=5, temperature=0)
    for _ in stream:
        pass
    assert [r.tokens for r in stream.results] == expected
    assert sorted(set(fills[1][0])) == [0, 1, 2, 3]  # generated tokens beside prompts


def test_per_sequence_stop_and_length(model: llamakit.Model, bctx: llamakit.Context) -> None:
    """Stop strings and max_new_tokens apply to each sequence on its own."""
    full = _one_by_one(model, PROMPTS[:3], 16)
    texts = [model.detokenize(t) for t in full]
    stop = texts[1][2:5]
    results = bctx.generate_batch(PROMPTS[:3], max_new_tokens=16, temperature=0, stop=[stop])
    assert results[1].finish_reason == "stop" and stop not in results[1].text
    for result, tokens in zip(results, full, strict=True):
        if result.finish_reason == "length":
            assert result.tokens == tokens


def test_stream_batch_events(bctx: llamakit.Context) -> None:
    """Streamed (index, piece) events join into each result's text."""
    stream = bctx.stream_batch(PROMPTS[:5], max_new_tokens=8, temperature=0)
    pieces: dict[int, list[str]] = {}
    for index, piece in stream:
        pieces.setdefault(index, []).append(piece)
    for index, result in enumerate(stream.results):
        assert "".join(pieces.get(index, [])) == result.text


def test_batch_errors(model: llamakit.Model, bctx: llamakit.Context) -> None:
    """Bad batch inputs raise typed errors."""
    with pytest.raises(llamakit.EmptyPromptError):
        bctx.generate_batch([])
    with pytest.raises(llamakit.ConfigError):
        bctx.generate_batch("not a list")  # type: ignore[arg-type]
    with pytest.raises(llamakit.InvalidTokenError):
        bctx.generate_batch([[1, 10**9]])
    with pytest.raises(llamakit.ConfigError):
        bctx.generate_batch(PROMPTS[:2], max_new_tokens=-1)
    with pytest.raises(llamakit.ConfigError, match="n_batch"):
        model.new_context(n_ctx=256, n_batch=2, n_ubatch=2, n_seq_max=4)
    with pytest.raises(llamakit.ConfigError, match="n_seq_max"):
        model.new_context(n_ctx=256, n_seq_max=0)


def test_packed_embeddings_equal_single(model: llamakit.Model) -> None:
    """Texts packed into one decode embed like texts embedded one at a time."""
    texts = PROMPTS[:6]
    with model.new_context(n_ctx=1024, embeddings=True, n_seq_max=4) as packed, \
            model.new_context(n_ctx=256, embeddings=True) as single:
        together = packed.embeddings(texts)
        alone = np.stack([single.embeddings(t) for t in texts])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kv_unified", [None, True, False])
def test_packed_embeddings_with_either_kv_layout(model: llamakit.Model,
                                                 kv_unified: bool | None) -> None:
    """Embeddings contexts share one KV buffer by default (unequal texts then fit one
    micro-batch); separate streams give the same vectors."""
    texts = PROMPTS[:6]
    with model.new_context(n_ctx=512, embeddings=True, n_seq_max=6,
                           kv_unified=kv_unified) as ctx, \
            model.new_context(n_ctx=256, embeddings=True, kv_unified=False) as single:
        assert ctx._handle.kv_unified is (kv_unified is not False)
        together = ctx.embeddings(texts)
        alone = np.stack([single.embeddings(t) for t in texts])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)


def test_kv_unified_is_validated_and_defaults_by_purpose(model: llamakit.Model) -> None:
    """Generation contexts keep llama.cpp's separate streams unless asked."""
    with model.new_context(n_ctx=256, n_seq_max=2) as ctx:
        assert ctx._handle.kv_unified is False
    with pytest.raises(llamakit.ConfigError, match="kv_unified"):
        model.new_context(n_ctx=256, kv_unified="yes")  # type: ignore[arg-type]


def test_threads_share_one_model(model: llamakit.Model) -> None:
    """Eight threads, each with its own context on one model, get the single-thread answer."""
    expected = _one_by_one(model, ["Hello world"], 10)[0]
    outputs: list[list[int]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with model.new_context(n_ctx=128, n_threads=1) as ctx:
                outputs.append(ctx.generate("Hello world", max_new_tokens=10,
                                            temperature=0).tokens)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and outputs == [expected] * 8


def test_one_context_from_two_threads_is_serialised(model: llamakit.Model) -> None:
    """Two threads on one context take turns and both get the right answer."""
    with model.new_context(n_ctx=256, n_threads=1) as ctx:
        expected = ctx.generate("Hello world", max_new_tokens=10, temperature=0).tokens
        outputs: list[list[int]] = []
        threads = [threading.Thread(target=lambda: outputs.append(
            ctx.generate("Hello world", max_new_tokens=10, temperature=0).tokens))
            for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outputs == [expected, expected]


def test_batch_fill_refuses_overflow_and_ragged_columns(model: llamakit.Model) -> None:
    """BatchHandle.fill (one call per step) checks what add checked token by token."""
    from llamakit._native.batch import BatchHandle
    with model.new_context(n_ctx=128, n_batch=8) as context:
        batch = BatchHandle(context._handle.native, 4)
        try:
            with pytest.raises(llamakit.ContextError, match="full"):
                batch.fill([1] * 5, list(range(5)), [0] * 5, [0] * 5)
            with pytest.raises(llamakit.ContextError, match="differ"):
                batch.fill([1, 2], [0, 1], [0], [0, 1])
            batch.fill([1, 2, 3], [0, 1, 2], [0, 0, 0], [0, 0, 1])
            batch.decode(context._handle)
            assert context.logits().shape == (model.n_vocab,)
        finally:
            batch.close()


@pytest.fixture
def step_order(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What batch steps do, in order: "decode" per llama_batch decoded, "text" per token
    turned into text."""
    from llamakit._native.batch import BatchHandle
    order: list[str] = []
    original_decode, original_feed = BatchHandle.decode, TextAssembler.feed

    def decode(self: BatchHandle, *args: object, **kwargs: object) -> None:
        order.append("decode")
        original_decode(self, *args, **kwargs)  # type: ignore[arg-type]

    def feed(self: TextAssembler, data: bytes) -> str:
        order.append("text")
        return original_feed(self, data)

    monkeypatch.setattr(BatchHandle, "decode", decode)
    monkeypatch.setattr(TextAssembler, "feed", feed)
    # the Python step's order (a native run decodes in C, in the same order: sample, ends,
    # next decode, then the text; tests/test_batch_run.py)
    monkeypatch.setattr("llamakit._batch.BatchStepper._runnable", lambda self: False)
    return order


@pytest.mark.parametrize("stops", [[], ["zzz-never"]])
def test_next_decode_starts_before_the_text_work(model: llamakit.Model, bctx: llamakit.Context,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 step_order: list[str],
                                                 stops: list[str]) -> None:
    """Without stop strings a step starts the next decode before it assembles text (on a
    GPU the text work overlaps the device); with one it assembles first. The tokens are
    the same either way, and so is the number of decodes."""
    order = step_order
    # only a fully offloaded CUDA model starts ahead (on the CPU it would hold pieces back)
    monkeypatch.setattr("llamakit._batch.starts_ahead", lambda model: True)
    # stream_batch: generate_batch runs its steady state in C (tests/test_batch_run.py)
    stream = bctx.stream_batch(PROMPTS[:3], max_new_tokens=4, temperature=0, stop=stops)
    for _ in stream:
        pass
    assert [r.tokens for r in stream.results] == _one_by_one(model, PROMPTS[:3], 4)
    assert order.count("decode") == 4  # the prompts, then three generated tokens
    first_text = order.index("text")
    if stops:
        assert order[first_text:first_text + 4] == ["text", "text", "text", "decode"]
    else:
        assert order[first_text - 1:first_text + 3] == ["decode", "text", "text", "text"]
        assert order[:2] == ["decode", "decode"]  # the second decode before any text


def test_cpu_steps_do_not_start_ahead(model: llamakit.Model, bctx: llamakit.Context,
                                      step_order: list[str]) -> None:
    """On the CPU a step assembles its text before the next decode: starting it ahead
    would hold every piece back by a whole decode."""
    from llamakit._batch import starts_ahead
    assert not starts_ahead(model)
    for _ in bctx.stream_batch(PROMPTS[:2], max_new_tokens=3, temperature=0):
        pass
    assert step_order == ["decode", "text", "text", "decode", "text", "text", "decode",
                          "text", "text"]
