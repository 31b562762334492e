"""``sample_many`` on one thread against several: the host part of a batched step.

    python benchmarks/micro/sample_many.py [--chains 16,64] [--threads 1,2,2pool] [--rounds 7]
                                           [--calls 50] [--batch 16] [--tokens 64]
                                           [--model GGUF] [--json OUT]

Part 1 times ``sample_many`` alone (no decode in between: every chain samples the last
output of one decode, each accepting its token) for N chains of llama.cpp's default chain
(top_k 40, top_p 0.95, min_p 0.05, temperature 0.8, dist; one seed each), one batch of
``--calls`` calls per thread count, the thread counts interleaved ``--rounds`` times on the
same chains. Reported: microseconds per call and per chain, minimum and median of the
batches. A thread count ``Tpool`` runs on the shim's own pool instead of OpenMP's team
(``lk_sampler_many_openmp(0)``; what a llama.cpp without OpenMP uses).

Part 2 runs ``Context.generate_batch`` on ``--batch`` prompts (``--tokens`` each, seeded
default sampling, no stop, end-of-generation tokens banned by ``logit_bias``) on a context of 2 threads, with the batch step's ``sample_many``
forced to one thread and left on the context's threads (the default), interleaved
``--rounds`` times: generated tokens per second, minimum/median/maximum.

The model is the tiny synthetic one of the tests (``llamakit.testing.write_llama_model``:
the llama-spm vocabulary, 32,000 tokens), so both parts are host-bound; ``--model`` takes
another GGUF.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import llamakit
import llamakit._batch as batch_module
from llamakit import SamplerChain
from llamakit._native.sampler import sample_many
from llamakit.testing import write_llama_model

PROMPTS = ["Hello world", "The quick brown fox", "Once upon a time", "In the beginning",
           "A B C", "What is the capital of France?", "1 2 3 4", "Good morning"]


def _default(model: llamakit.Model, seed: int) -> SamplerChain:
    return (SamplerChain(model).add_top_k(40).add_top_p(0.95).add_min_p(0.05).add_temp(0.8)
            .add_dist(seed=seed))


def _mode(lib: Any, mode: str) -> int:
    """Set the shim's kind of threads for ``mode`` ("2", "2pool"); its thread count."""
    pool = mode.endswith("pool")
    lib.lk_sampler_many_openmp(0 if pool else 1)
    return int(mode.removesuffix("pool"))


def _forced(sample: Any, n_threads: int) -> Any:
    """``sample_many`` with ``n_threads`` whatever the caller passes."""
    def call(*args: Any, **kwargs: Any) -> Any:
        return sample(*args, **{**kwargs, "n_threads": n_threads})
    return call


def _summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def part_sample_many(model: llamakit.Model, counts: list[int], threads: list[str],
                     rounds: int, calls: int) -> dict[str, Any]:
    report: dict[str, Any] = {}
    lib = model._handle.lib
    with model.new_context(n_ctx=256, n_threads=2) as ctx:
        handle = ctx._handle
        handle.decode(model.tokenize("Once upon a time"))
        for n in counts:
            chains = [_default(model, 1000 + i) for i in range(n)]
            items = [(c._handle, -1) for c in chains]
            samples: dict[str, list[float]] = {t: [] for t in threads}
            for t in threads:  # warm-up: the pool's threads start, scratch buffers grow
                sample_many(handle, items, n_threads=_mode(lib, t))
            for _ in range(rounds):
                for t in threads:
                    count = _mode(lib, t)
                    start = time.perf_counter()
                    for _ in range(calls):
                        sample_many(handle, items, n_threads=count)
                    samples[t].append((time.perf_counter() - start) * 1e6 / calls)
            for t in threads:
                s = _summary(samples[t])
                report[f"{n} chains, {t} threads"] = {**s, "samples_us": samples[t]}
                print(f"sample_many {n:3} chains, {t} threads: {s['min']:8.1f} us/call min "
                      f"({s['min'] / n:6.1f} us/chain), median {s['median']:8.1f}, "
                      f"max {s['max']:8.1f}", flush=True)
    return report


def part_generate_batch(model: llamakit.Model, n_batch: int, threads: list[str],
                        rounds: int, tokens: int) -> dict[str, Any]:
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n_batch)]
    original = batch_module.sample_many
    tok_s: dict[str, list[float]] = {t: [] for t in threads}
    lib = model._handle.lib
    # Every sequence runs the full length, as in benchmarks/gpu/batched.py.
    ban = {str(t): float("-inf") for t in model.special_tokens if model.is_eog(t)}
    with model.new_context(n_ctx=n_batch * (tokens + 32), n_batch=512, n_seq_max=n_batch,
                           n_threads=2) as ctx:
        ctx.generate_batch(prompts, max_new_tokens=8, seed=1)  # warm-up
        try:
            for _ in range(rounds):
                for t in threads:
                    # t threads for the step's sampling; the decode keeps the context's.
                    batch_module.sample_many = _forced(original, _mode(lib, t))
                    start = time.perf_counter()
                    results = ctx.generate_batch(prompts, max_new_tokens=tokens, seed=7,
                                                 stop=[], logit_bias=ban)
                    wall = time.perf_counter() - start
                    tok_s[t].append(sum(len(r.tokens) for r in results) / wall)
        finally:
            batch_module.sample_many = original
            lib.lk_sampler_many_openmp(1)
    report: dict[str, Any] = {}
    for t in threads:
        s = _summary(tok_s[t])
        report[f"generate_batch {n_batch}, {t} sampling threads"] = {**s, "samples": tok_s[t]}
        print(f"generate_batch {n_batch} sequences, sampling on {t} threads: "
              f"{s['median']:7.1f} tok/s median (min {s['min']:7.1f}, max {s['max']:7.1f})",
              flush=True)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", default="16,64")
    parser.add_argument("--threads", default="1,2,2pool")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--model", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    counts = [int(c) for c in args.chains.split(",")]
    threads = [t.strip() for t in args.threads.split(",") if t.strip()]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.model) if args.model else Path(folder) / "tiny.gguf"
        if not args.model:
            write_llama_model(path)
        with llamakit.load_model(path, backend="cpu") as model:
            report: dict[str, Any] = {"n_vocab": model.n_vocab, "rounds": args.rounds,
                                      "calls": args.calls}
            report.update(part_sample_many(model, counts, threads, args.rounds, args.calls))
            if args.batch > 0:
                report.update(part_generate_batch(model, args.batch, threads, args.rounds,
                                                  args.tokens))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
