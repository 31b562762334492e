"""Subprocess of the threading tests: one scenario of concurrent use per run.

Usage: ``python thread_worker.py SCENARIO MODEL.gguf [LORA.gguf]``. Prints one JSON line
with what each thread saw (the names of the exceptions it got); a crash shows as the
process dying by a signal, which the test counts. Each scenario races a close against a
call in flight at several moments, so that some closes land inside C.
"""

from __future__ import annotations

import gc
import json
import sys
import threading
import time
from typing import Any

import numpy as np

import llamakit

PROMPT = "Once upon a time there was a little robot who " * 6
ROUNDS = 12


def _generate_until(ctx: llamakit.Context, started: threading.Event, seen: list[str],
                    graph: bool = False) -> None:
    try:
        # one long stream, so that every close lands inside it (a close between two calls
        # of an adapter is no error: the next call simply runs without it); ``graph``:
        # sampled inside llama.cpp's graph (backend_sampling: a chain attached to the
        # context, which closing it must free after the context)
        for _piece in ctx.stream(PROMPT, max_new_tokens=400, temperature=0,
                                 on_overflow="truncate", backend_sampling=graph):
            started.set()
        seen.append("finished")
    except llamakit.LlamakitError as exc:
        seen.append(type(exc).__name__)
    finally:
        started.set()


def close_under_generate(path: str, target: str, lora: str | None,
                         graph: bool = False) -> list[str]:
    """Close the model, the context or an applied adapter while a thread generates."""
    seen: list[str] = []
    for round_ in range(ROUNDS):
        model = llamakit.load_model(path, backend="cpu")
        ctx = model.new_context(n_ctx=512, n_batch=16, n_ubatch=16, n_threads=1)
        adapter = None
        if lora is not None:
            adapter = model.load_lora(lora)
            ctx.apply_lora(adapter, 1.0)
        started = threading.Event()
        worker = threading.Thread(target=_generate_until, args=(ctx, started, seen, graph))
        worker.start()
        started.wait()
        time.sleep(0.002 * round_)  # land in prompt decoding, sampling, or between pieces
        {"model": model, "context": ctx, "lora": adapter}[target].close()  # type: ignore[union-attr]
        worker.join()
        model.close()
    return seen


def abandoned_stream(path: str) -> list[str]:
    """A stream half read by a thread that has ended does not block other threads."""
    seen: list[str] = []
    kept: list[Any] = []
    with llamakit.load_model(path, backend="cpu") as model, \
            model.new_context(n_ctx=256, n_batch=32, n_threads=1) as ctx:
        def start() -> None:
            stream = ctx.stream("Hello there", max_new_tokens=32, temperature=0)
            next(stream)
            kept.append(stream)  # still referenced, never finished

        thread = threading.Thread(target=start)
        thread.start()
        thread.join()
        result = ctx.generate("Hello there", max_new_tokens=4, temperature=0)
        seen.append(f"generated:{len(result.tokens)}")
        try:
            next(kept[0])
            seen.append("resumed")
        except llamakit.ContextBusyError:
            seen.append("ContextBusyError")
        kept.clear()
        gc.collect()
        seen.append(f"again:{len(ctx.generate('Hi', max_new_tokens=2, temperature=0).tokens)}")
    return seen


def interleaved_streams(path: str) -> list[str]:
    """Two streams on one context in one thread: the second is refused, the first is
    unharmed (same tokens as alone)."""
    seen: list[str] = []
    with llamakit.load_model(path, backend="cpu") as model, \
            model.new_context(n_ctx=256, n_batch=32, n_threads=1) as ctx:
        alone = ctx.generate("Hello there", max_new_tokens=12, temperature=0).tokens
        ctx.reset()
        first = ctx.stream("Hello there", max_new_tokens=12, temperature=0)
        next(first)
        second = ctx.stream("Something else entirely", max_new_tokens=12, temperature=0)
        try:
            next(second)
            seen.append("second-ran")
        except llamakit.ContextBusyError:
            seen.append("ContextBusyError")
        try:
            ctx.reset()
            seen.append("reset-ran")
        except llamakit.ContextBusyError:
            seen.append("ContextBusyError")
        for _ in first:
            pass
        assert first.result is not None
        seen.append("same" if first.result.tokens == alone else "different")
        seen.append(f"after:{len(ctx.generate('Hi', max_new_tokens=2, temperature=0).tokens)}")
    return seen


class _Hoarder:
    """A Python sampler that keeps every Candidates and logits view it is given."""

    def __init__(self) -> None:
        self.kept: list[Any] = []

    def apply(self, candidates: Any) -> None:
        for old, old_logits in self.kept:  # read and write what earlier calls gave
            old_logits[:] = 1e9
            float(np.sum(old.probs))
            old.keep([0])
        self.kept.append((candidates, candidates.logits))


def kept_candidates(path: str) -> list[str]:
    """Candidates kept past their call never touch llama.cpp's (freed) array."""
    seen: list[str] = []
    with llamakit.load_model(path, backend="cpu") as model, \
            model.new_context(n_ctx=256, n_batch=32, n_threads=1) as ctx:
        base = ctx.generate("Hello there", max_new_tokens=16, temperature=0).tokens
        hoarder = _Hoarder()
        chain = llamakit.SamplerChain(model).add_custom(hoarder).add_greedy()
        tokens = ctx.generate("Hello there", max_new_tokens=16, sampler=chain).tokens
        seen.append("same" if tokens == base else "different")
        for old, logits in hoarder.kept:
            logits[:] = 0.0
            old.keep([0])
        seen.append(f"kept:{len(hoarder.kept)}")
    return seen


def contexts_in_threads(path: str) -> list[str]:
    """Contexts of one model in several threads give what they give one after another."""
    prompts = [f"Story number {i}: " + "the cat sat on the mat " * (i + 1) for i in range(4)]
    with llamakit.load_model(path, backend="cpu") as model:
        def run(prompt: str, out: dict[str, list[int]]) -> None:
            with model.new_context(n_ctx=256, n_batch=32, n_threads=1) as ctx:
                for seed in (1, 2):
                    out[f"{prompt}/{seed}"] = ctx.generate(
                        prompt, max_new_tokens=16, seed=seed, temperature=0.9).tokens

        serial: dict[str, list[int]] = {}
        for prompt in prompts:
            run(prompt, serial)
        parallel: dict[str, list[int]] = {}
        threads = [threading.Thread(target=run, args=(p, parallel)) for p in prompts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return ["same" if serial == parallel else "different"]


class _Closer:
    """A Python sampler stage that closes something on its second call."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.calls = 0

    def apply(self, candidates: Any) -> None:
        self.calls += 1
        if self.calls == 2:
            self.target.close()


def close_in_callback(path: str) -> list[str]:
    """Closing the context or the model from inside a sampling callback (the closing
    thread is inside C on them) frees them only once the call has returned."""
    seen: list[str] = []
    for target in ("context", "model"):
        model = llamakit.load_model(path, backend="cpu")
        ctx = model.new_context(n_ctx=256, n_threads=1)
        closer = _Closer(ctx if target == "context" else model)
        chain = llamakit.SamplerChain(model).add_custom(closer).add_greedy()
        try:
            ctx.generate("Hello", max_new_tokens=5, sampler=chain)
            seen.append("finished")
        except llamakit.LlamakitError as exc:
            seen.append(type(exc).__name__)
        model.close()
    return seen


def main() -> None:
    scenario, path = sys.argv[1], sys.argv[2]
    lora = sys.argv[3] if len(sys.argv) > 3 else None
    if scenario.startswith("close-"):
        target = scenario.removeprefix("close-")
        seen = close_under_generate(path, target.removesuffix("-graph"), lora,
                                    graph=target.endswith("-graph"))
    else:
        seen = {"abandoned": abandoned_stream, "interleaved": interleaved_streams,
                "candidates": kept_candidates, "threads": contexts_in_threads,
                "callback": close_in_callback}[scenario](path)
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
