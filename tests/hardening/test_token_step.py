"""The generation loop's host work per token: how many pins and lock turns a token costs
(counted, not timed), and that one pin around decode + sample keeps the cache true."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import llamakit
from llamakit._native import handle as handle_module
from llamakit._native.handle import Handle
from llamakit._sampler_chain import SamplerChain
from llamakit._sampler_protocol import Candidates

PROMPT = "Once upon a time"


class _CountingLock:
    """``_TREE`` with a count of its acquisitions."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.count = 0

    def __enter__(self) -> None:
        self.count += 1
        self.lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.lock.__exit__(*exc)

    def acquire(self, *args: Any) -> bool:
        self.count += 1
        return bool(self.lock.acquire(*args))

    def release(self) -> None:
        self.lock.release()


@pytest.fixture
def counters(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    pins: dict[str, Any] = {"pins": 0}
    begin = Handle._begin_call

    def counting(self: Handle) -> Any:
        pins["pins"] += 1
        return begin(self)

    tree = _CountingLock(handle_module._TREE)
    monkeypatch.setattr(Handle, "_begin_call", counting)
    monkeypatch.setattr(handle_module, "_TREE", tree)
    pins["tree"] = tree
    yield pins


def _banned(model: llamakit.Model) -> dict[int, float]:
    """A logit_bias that bans every end-of-generation token: calls run to their limit."""
    return {t: float("-inf") for t in range(model.n_vocab) if model.is_eog(t)}


def _cost(counters: dict[str, Any], run: Any, n: int) -> tuple[int, int]:
    counters["pins"], counters["tree"].count = 0, 0
    run(n)
    return counters["pins"], counters["tree"].count


@pytest.mark.parametrize("how", ["generate", "stream"])
def test_a_generated_token_pins_the_context_and_the_chain_once(
        ctx: llamakit.Context, counters: dict[str, Any], how: str) -> None:
    """Each further streamed token costs exactly two pins (context, sampler chain), one pin
    per handle for the decode and the sample together rather than one per handle-layer
    function on the way, and two turns of the global ``_TREE`` (the sampler's: a
    context's count is guarded by its own call lock). ``generate`` decodes its tokens in
    native runs (``TokenRun``) that pin each handle once a run: 25 tokens cost what 5 do."""
    bias = _banned(ctx.model)

    def run(n: int) -> None:
        if how == "generate":
            result = ctx.generate(PROMPT, max_new_tokens=n, temperature=0, logit_bias=bias)
        else:
            stream = ctx.stream(PROMPT, max_new_tokens=n, temperature=0, logit_bias=bias)
            for _ in stream:
                pass
            result = stream.result
        assert len(result.tokens) == n

    run(2)  # warm up: the same prefix cached from here on
    pins_short, tree_short = _cost(counters, run, 5)
    pins_long, tree_long = _cost(counters, run, 25)
    per_token = 2 if how == "stream" else 0
    assert (pins_long - pins_short) == per_token * 20
    assert (tree_long - tree_short) == per_token * 20


def test_a_failed_sample_after_the_decode_keeps_the_cache_true(ctx: llamakit.Context) -> None:
    """A step decodes the last token and samples the next under one pin: when the sample
    fails, the decoded token is held in the prompt cache as it is in llama.cpp's memory."""
    class FailThird:
        calls = 0

        def apply(self, candidates: Candidates) -> None:
            FailThird.calls += 1
            if FailThird.calls == 3:
                raise KeyError("third")

    ctx.deterministic = False
    chain = SamplerChain(ctx.model).add_custom(FailThird()).add_greedy()
    with pytest.raises(KeyError, match="third"):
        ctx.generate(PROMPT, max_new_tokens=10, sampler=chain)
    prompt = ctx.tokenize(PROMPT)
    held = ctx._handle.pos_max(0) + 1
    assert held == len(prompt) + 2  # the prompt and the two tokens sampled before
    assert len(ctx._past) == held and ctx._past[:len(prompt)] == prompt
    again = ctx.generate(PROMPT, max_new_tokens=3, temperature=0)
    assert again.timings.prompt_tokens_cached == len(prompt) - 1


@pytest.mark.parametrize("how", ["stream", "generate"])
def test_close_from_another_thread_waits_for_the_step_in_flight(
        model: llamakit.Model, how: str) -> None:
    """A close while a step holds its pins (here: in the sampler chain's Python stage,
    after the step's decode) waits for the step to end; the stream then stops at its next
    token (the close's abort flag, or the closed handle) instead of using freed memory.
    ``generate``'s step is inside a native run (``TokenRun``, which calls the Python stage
    from C): the run stops before its next decode."""
    ctx = model.new_context(n_ctx=256, n_threads=1)
    inside = threading.Event()

    class Slow:
        calls = 0

        def apply(self, candidates: Candidates) -> None:
            Slow.calls += 1
            if Slow.calls == 3:
                inside.set()
                # the closer has raised the abort flag: it waits for this step now
                deadline = time.monotonic() + 10
                while not ctx._handle._abort_flag[0] and time.monotonic() < deadline:
                    time.sleep(0.001)
                assert not ctx.closed

    chain = SamplerChain(model).add_custom(Slow()).add_greedy()
    closer = threading.Thread(target=lambda: (inside.wait(10), ctx.close()))
    closer.start()
    with pytest.raises((llamakit.ClosedError, llamakit.AbortedError)):
        if how == "generate":
            ctx.generate(PROMPT, max_new_tokens=20, sampler=chain)
        else:
            for _ in ctx.stream(PROMPT, max_new_tokens=20, sampler=chain):
                pass
    closer.join()
    assert ctx.closed and Slow.calls == 3
