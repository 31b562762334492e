"""The engine's lockstep for a burst (``BatchStepper.wave``): requests that arrive together
are fed before their first tokens step on, as llama-batched-bench feeds them; a stream
that has gone further never waits for a new prompt."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import llamakit
from llamakit._native.batch import BatchHandle


@pytest.fixture
def fills(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[list[int], list[int]]]]:
    """The (sequence ids, output flags) of every batch the engine decodes."""
    seen: list[tuple[list[int], list[int]]] = []
    original = BatchHandle.fill

    def fill(self: BatchHandle, tokens: Any, positions: Any, seq_ids: Any,
             outputs: Any) -> None:
        seen.append((list(seq_ids), list(outputs)))
        original(self, tokens, positions, seq_ids, outputs)

    monkeypatch.setattr(BatchHandle, "fill", fill)
    yield seen


def _prompts(n: int, length: int) -> list[list[int]]:
    return [[100 + 13 * i + j for j in range(length)] for i in range(n)]


def test_a_burst_is_fed_before_it_steps(model: llamakit.Model,
                                        fills: list[tuple[list[int], list[int]]]) -> None:
    """Four requests queued together whose prompts overflow a batch of 64: every prompt
    token is decoded before any second generated token, then all four step together; the
    tokens are generate's."""
    prompts = _prompts(4, 40)
    with llamakit.Engine(model, n_parallel=4, n_ctx=1024, n_batch=64, n_threads=2) as engine:
        with engine._cond:  # all four queued before the scheduler picks any
            requests = [engine.submit(tokens=p, max_new_tokens=5, temperature=0)
                        for p in prompts]
        results = [request.result() for request in requests]
    with model.new_context(n_ctx=256, n_threads=2) as single:
        assert [r.tokens for r in results] == [
            single.generate(p, max_new_tokens=5, temperature=0).tokens for p in prompts]
    sizes = [len(seq_ids) for seq_ids, _ in fills]
    # 160 prompt tokens in batches of 64 (a first token sampled at each prompt's end
    # waits), then four generated tokens a step: never a prompt mixed with a second token
    assert sum(sizes[:3]) == 160 and sizes[3:] == [4, 4, 4, 4]
    assert all(sorted(seq_ids) == [0, 1, 2, 3] for seq_ids, _ in fills[3:])


def test_a_running_stream_does_not_wait_for_new_prompts(
        model: llamakit.Model, fills: list[tuple[list[int], list[int]]]) -> None:
    """A stream that has produced two tokens keeps stepping while a later request's long
    prompt is fed: each of those decodes carries its next token."""
    ban = {t: float("-inf") for t in range(model.n_vocab) if model.is_eog(t)}
    with llamakit.Engine(model, n_parallel=2, n_ctx=1024, n_batch=64, n_threads=2) as engine:
        first = engine.submit(tokens=_prompts(1, 8)[0], max_new_tokens=400, temperature=0,
                              logit_bias=ban)
        for pieces, _ in enumerate(first, 1):  # it has streamed three pieces
            if pieces == 3:
                break
        second = engine.submit(tokens=_prompts(2, 200)[1], max_new_tokens=3, temperature=0)
        second.result()
        running = not first.done
        first.cancel()
    # the decodes that carry the second prompt's tokens (more than four batches of it): each
    # also carries the first stream's next token (sequence 0), which is still running
    assert running
    carrying = [seq_ids for seq_ids, _ in fills if seq_ids.count(1) > 1]
    assert len(carrying) >= 4
    assert all(0 in seq_ids for seq_ids in carrying)


def test_slot_choice_keeps_busy_sequences_together() -> None:
    """Without a cached prefix to reuse, a request takes the idle slot that fills a gap
    between busy ones, else one beside a busy one, else the least recently used."""
    from llamakit._engine.slots import EngineSlot, choose_slot
    slots = [EngineSlot(seq_id=i, last_used=u) for i, u in enumerate([5, 9, 1, 7, 2, 0])]
    idle = [slots[i] for i in (0, 2, 4, 5)]
    assert choose_slot(idle, [1, 2], 0.5, True).seq_id == 5  # nothing busy: LRU
    assert choose_slot(idle, [1, 2], 0.5, True, {1, 3}).seq_id == 2  # fills the gap
    assert choose_slot(idle, [1, 2], 0.5, True, {3}).seq_id == 2  # beside 3, older than 4
    assert choose_slot(idle, [1, 2], 0.5, True, {1}).seq_id == 2  # beside 1 (0 is newer)
    slots[4].cached = [1, 2, 3]
    assert choose_slot(idle, [1, 2, 3, 4], 0.5, True, {1, 3}).seq_id == 4  # its cache


def test_a_new_request_fills_the_gap_a_cancelled_one_left(model: llamakit.Model) -> None:
    """Busy slots 0-3, the request in slot 1 cancelled: the next request takes slot 1 (one
    block of sequences, one ubatch a step), not the never-used slot 4."""
    ban = {t: float("-inf") for t in range(model.n_vocab) if model.is_eog(t)}
    with llamakit.Engine(model, n_parallel=8, n_ctx=8 * 256, n_batch=64,
                         n_threads=2) as engine:
        with engine._cond:
            running = [engine.submit(tokens=p, max_new_tokens=200, temperature=0,
                                     logit_bias=ban) for p in _prompts(4, 8)]
        for request in running:
            next(iter(request))  # each has started
        assert sorted(r.slot.seq_id for r in running if r.slot is not None) == [0, 1, 2, 3]
        running[1].cancel()
        with pytest.raises(llamakit.AbortedError):
            running[1].result()
        late = engine.submit(tokens=_prompts(5, 8)[4], max_new_tokens=3, temperature=0)
        late.result()
        assert late.slot is not None and late.slot.seq_id == 1
        for request in running:
            request.cancel()
