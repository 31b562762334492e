"""Host work per batch step: what ``generate_batch`` costs beside llama.cpp's decode.

    python benchmarks/micro/batch_step.py [--sequences 64] [--tokens 64] [--rounds 15]

Tiny synthetic model (``write_llama_model`` defaults: llama-spm vocabulary, 32,000 tokens),
CPU, ``--threads`` threads, ``--sequences`` prompts of 32 random tokens decoded together,
``--tokens`` new tokens each, greedy with a ``logit_bias`` ban of the end-of-generation
tokens (every sequence runs to its limit), as the GPU benchmarks do. Per round, one
``generate_batch``; its host time is the wall clock minus llama.cpp's own perf interval
(``t_eval_ms + t_p_eval_ms``: from each decode's start to the synchronisation that reads
its result), divided by the steps (``--tokens``). Printed: the minimum and median over
rounds of that figure, the same without the time inside ``lk_sampler_sample_many`` (the
sampling's C: what is left is llamakit's Python and the decode's call), the median gap
from a sample's return to the next decode's start (with ``--ahead``: the Python a GPU step
waits for after sampling; without it the gap also holds the text work), and (deterministic, counted once) the Python function calls and
handle pins (``Handle._begin_call``) per step.

On a GPU the step's decode runs on the device while none of this can overlap it (the next
step needs the sampled tokens), so a step's host time adds to every step's wall time.
Runs against whichever ``llamakit`` is importable (``PYTHONPATH`` picks a checkout).

``--ahead``: the step order of a model fully offloaded to CUDA (``starts_ahead``): each step
starts the next decode before its text work. On the CPU the decode still computes inside
``llama_decode``, but llama.cpp's perf interval then runs from that decode's start to the
next step's sampling, so the text work falls inside it and the host time printed is the
work a GPU step cannot overlap: sampling, the ends of generation, the next batch's
assembly, and the call's setup and results.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import llamakit
from llamakit._native.handle import Handle
from llamakit.testing import write_llama_model


class _TimedLib:
    """The context handle's ``lib``, timing ``lk_sampler_sample_many`` (the sampling's C)
    and the gaps from its return to the next ``lk_decode_interruptible`` (the step's
    Python between a sample and the next decode's start)."""

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        self.sampling = 0.0
        self.gaps: list[float] = []
        self._sampled = 0.0

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._lib, name)
        if name == "lk_decode_interruptible":
            def decode(*args: Any) -> Any:
                if self._sampled:
                    self.gaps.append(time.perf_counter() - self._sampled)
                    self._sampled = 0.0
                return value(*args)

            return decode
        if name != "lk_sampler_sample_many":
            return value

        def timed(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return value(*args)
            finally:
                self._sampled = time.perf_counter()
                self.sampling += self._sampled - started

        return timed


def run(ctx: llamakit.Context, prompts: list[list[int]], tokens: int,
        ban: dict[int, float]) -> tuple[float, float, float, float]:
    """Wall ms, host ms, of the host the sampling's native call, ms, and the median gap
    from a sample to the next decode's start, µs."""
    handle = ctx._handle
    timed = _TimedLib(handle.lib)
    handle.lib = timed
    ctx.reset_perf()
    started = time.perf_counter()
    try:
        results = ctx.generate_batch(prompts, max_new_tokens=tokens, temperature=0,
                                     logit_bias=ban)
    finally:
        wall = (time.perf_counter() - started) * 1e3
        handle.lib = timed._lib
    assert all(len(r.tokens) == tokens for r in results)
    perf = ctx.perf()
    return (wall, wall - perf["t_eval_ms"] - perf["t_p_eval_ms"], timed.sampling * 1e3,
            statistics.median(timed.gaps) * 1e6 if timed.gaps else 0.0)


def counts(ctx: llamakit.Context, prompts: list[list[int]], tokens: int,
           ban: dict[int, float]) -> tuple[int, int]:
    calls = 0
    pins = 0
    original = Handle._begin_call

    def counting(self: Handle) -> Any:
        nonlocal pins
        pins += 1
        return original(self)

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    Handle._begin_call = counting  # type: ignore[method-assign]
    sys.setprofile(profile)
    try:
        ctx.generate_batch(prompts, max_new_tokens=tokens, temperature=0, logit_bias=ban)
    finally:
        sys.setprofile(None)
        Handle._begin_call = original  # type: ignore[method-assign]
    return calls, pins


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ahead", action="store_true",
                        help="start each next decode before the text work, as on CUDA")
    args = parser.parse_args()
    if args.ahead:
        from llamakit import _batch
        _batch.starts_ahead = lambda model: True  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny.gguf"
        write_llama_model(path)
        with llamakit.load_model(path, backend="cpu") as model, model.new_context(
                n_ctx=args.sequences * (32 + args.tokens), n_seq_max=args.sequences,
                n_batch=2048, n_ubatch=512, n_threads=args.threads) as ctx:
            rng = random.Random(0)
            special = set(model.special_tokens)
            pool = [t for t in range(model.n_vocab) if t not in special]
            ban = {t: float("-inf") for t in special if model.is_eog(t)}
            prompts = [[rng.choice(pool) for _ in range(32)] for _ in range(args.sequences)]
            run(ctx, prompts, 4, ban)  # warm-up
            calls, pins = counts(ctx, prompts, args.tokens, ban)
            runs = [run(ctx, prompts, args.tokens, ban) for _ in range(args.rounds)]
    hosts = [host / args.tokens for _, host, _, _ in runs]
    rest = [(host - sampling) / args.tokens for _, host, sampling, _ in runs]
    gaps = [gap for _, _, _, gap in runs]
    print(f"{args.sequences} sequences, {args.tokens} steps: host ms per step min "
          f"{min(hosts):.3f} median {statistics.median(hosts):.3f}; without the sampling's "
          f"native call min {min(rest):.3f} median {statistics.median(rest):.3f}; sample to "
          f"next decode µs min {min(gaps):.0f} median {statistics.median(gaps):.0f}; Python calls "
          f"per step {calls / args.tokens:.0f}, handle pins per step {pins / args.tokens:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
