#!/usr/bin/env python3
"""Batched generation throughput: ``Context.generate_batch`` against llama-batched-bench.

    python3 benchmarks/gpu/batched.py M.gguf --llama-batched-bench BIN \\
        [--backend cuda] [--npl 1,8,32,64] [--n-prompt 128] [--n-gen 128] [--runs 3]
        [--profile 32] [--json OUT]

For each number of parallel sequences ``npl``: ``npl`` prompts of ``--n-prompt`` random
tokens (different per sequence), ``--n-gen`` new tokens each (every end-of-generation
token banned with ``logit_bias``, so every sequence runs the full length), best of
``--runs``, once greedy and once with llama.cpp's default sampling chain (top_k 40, top_p
0.95, min_p 0.05, temperature 0.8, a fixed seed). Throughput is generated tokens over the
whole wall time (prompts included); llama-batched-bench's side is ``pl * tg / T s`` (its
``T s`` holds its prompt and generation phases; its own ``S t/s`` also counts the prompt
tokens; its tokens are random, nothing is sampled).
One context serves every ``npl``: ``n_seq_max`` = the largest, ``n_ctx`` = largest ×
(prompt + new tokens), the sizes llama-batched-bench gets (``-c``, ``-npl``).

llama.cpp's own decode time (perf counters, from each decode's start to its
synchronisation) is reported next to the wall clock: the rest is llamakit's host work per
step (batch assembly, one sampler call per sequence, detokenizing, bookkeeping). With
``--profile NPL``, one more default-sampling run at ``NPL`` sequences runs under cProfile
and the top functions by own time are printed (and kept in the JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import json
import pstats
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import llamakit
from llamakit._batch import BatchStepper

DEFAULT_SAMPLING: dict[str, Any] = {"temperature": 0.8, "top_k": 40, "top_p": 0.95,
                                    "min_p": 0.05, "seed": 1234}


def run_batched_bench(binary: Path, model: Path, *, n_prompt: int, n_gen: int,
                      npl: list[int], n_ctx: int) -> list[dict[str, Any]]:
    command = [str(binary), "-m", str(model), "-c", str(n_ctx), "-b", "2048", "-ub", "512",
               "-npp", str(n_prompt), "-ntg", str(n_gen), "-npl", ",".join(map(str, npl)),
               "-ngl", "99", "-fa", "on", "--output-format", "jsonl"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    for row in rows:
        row["command"] = " ".join(command)
    return rows


def measure_engine(engine: llamakit.Engine, prompts: list[list[int]], *, n_gen: int,
                   sampling: dict[str, Any], exact: bool = True, burst: bool = True
                   ) -> dict[str, float]:
    """``measure`` through the engine: every prompt submitted (as many clients), generated
    tokens over the wall time until the last result. ``burst``: all of them queued before
    the scheduler picks any (llama-batched-bench's start; the engine holds its lock while
    they are submitted), else one after another as the submissions come (the first
    starts alone)."""
    ctx = engine._ctx
    ctx.reset_perf()
    started = time.perf_counter()
    with engine._cond if burst else contextlib.nullcontext():
        requests = [engine.submit(tokens=prompt, max_new_tokens=n_gen, **sampling)
                    for prompt in prompts]
    results = [request.result() for request in requests]
    return _summary(ctx, started, results, n_gen * len(prompts) if exact else None)


def _eog_bias(model: llamakit.Model) -> dict[str, float]:
    return {str(t): float("-inf") for t in model.special_tokens if model.is_eog(t)}


def measure(ctx: llamakit.Context, prompts: list[list[int]], *, n_gen: int,
            sampling: dict[str, Any], exact: bool = True) -> dict[str, float]:
    ctx.reset_perf()
    started = time.perf_counter()
    results = ctx.generate_batch(prompts, max_new_tokens=n_gen, **sampling)
    return _summary(ctx, started, results, n_gen * len(prompts) if exact else None)


def _summary(ctx: llamakit.Context, started: float, results: list[Any],
             expected: int | None) -> dict[str, float]:
    """A measurement's figures: wall time since ``started``, generated tokens (exactly
    ``expected`` unless None), llama.cpp's own decode time and the host time beside it."""
    wall = time.perf_counter() - started
    perf = ctx.perf()
    generated = sum(len(r.tokens) for r in results)
    if expected is not None and generated != expected:
        raise RuntimeError(f"{generated} tokens generated, not {expected}")
    decode_ms = perf["t_eval_ms"] + perf["t_p_eval_ms"]
    return {"wall_s": wall, "tokens_per_s": generated / wall, "decode_ms": decode_ms,
            "host_ms": wall * 1e3 - decode_ms, "generated": generated}


_RUNNABLE = getattr(BatchStepper, "_runnable", None)


def python_steps(on: bool) -> None:
    """Whether generate_batch steps through Python only (no native runs)."""
    if _RUNNABLE is not None:
        BatchStepper._runnable = (lambda self: False) if on else _RUNNABLE  # type: ignore


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--backend", default="cuda")
    parser.add_argument("--llama-batched-bench", type=Path, default=None)
    parser.add_argument("--npl", default="1,8,32,64")
    parser.add_argument("--n-prompt", type=int, default=128)
    parser.add_argument("--n-gen", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=int, default=None, metavar="NPL")
    parser.add_argument("--no-bias", dest="bias", action="store_false",
                        help="no logit_bias ban of end-of-generation tokens (the bias stage "
                        "turns off the shim's greedy and top-k fast paths); a sequence may "
                        "then end early: throughput counts the tokens generated")
    parser.add_argument("--modes", default="greedy,default,greedy-graph,default-graph",
                        help="sampling modes to measure: greedy, default (top_k 40, top_p "
                        "0.95, min_p 0.05, temperature 0.8), and the same with "
                        "backend_sampling (-graph: llama.cpp samples inside the graph); "
                        "-py after any: every step through Python, no native runs; "
                        "engine- before greedy/default (and their -py): through "
                        "llamakit.Engine")
    parser.add_argument("--engine-arrival", choices=("burst", "staggered"), default="burst",
                        help="engine- modes: every request queued before the scheduler "
                        "picks any (burst), or as each submission comes (staggered)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    npl = [int(n) for n in args.npl.split(",")]
    n_ctx = max(npl) * (args.n_prompt + args.n_gen)
    report: dict[str, Any] = {"model": str(args.model), "n_prompt": args.n_prompt,
                              "n_gen": args.n_gen, "runs": args.runs, "npl": npl,
                              "n_ctx": n_ctx, "bias": args.bias, "llamakit": []}
    if args.llama_batched_bench is not None:
        report["llama_batched_bench"] = run_batched_bench(
            args.llama_batched_bench, args.model, n_prompt=args.n_prompt, n_gen=args.n_gen,
            npl=npl, n_ctx=n_ctx)
    with llamakit.load_model(args.model, backend=args.backend, n_gpu_layers=-1) as model, \
            model.new_context(n_ctx=n_ctx, n_seq_max=max(npl), n_batch=2048,
                              n_ubatch=512) as ctx:
        rng = random.Random(0)
        specials = set(model.special_tokens)
        pool = [t for t in range(model.n_vocab) if t not in specials]
        bias = {"logit_bias": _eog_bias(model)} if args.bias else {}
        every = {"greedy": {"temperature": 0.0, **bias}, "default": {**DEFAULT_SAMPLING, **bias}}
        every.update({f"{name}-graph": {**sampling, "backend_sampling": True}
                      for name, sampling in list(every.items())})
        # "-py": every step through Python (BatchStepper.step), as before generate_batch's
        # native runs; the same run's A/B
        every.update({f"{name}-py": sampling for name, sampling in list(every.items())})
        # "engine-": the same requests through llamakit.Engine (continuous batching, every
        # request submitted at once; its own context of the same size)
        every.update({f"engine-{name}": sampling for name, sampling in list(every.items())
                      if not name.endswith("-graph")})
        modes = {name: every[name] for name in args.modes.split(",")}
        engine = None
        if any(name.startswith("engine-") for name in modes):
            engine = llamakit.Engine(model, n_parallel=max(npl), n_ctx=n_ctx, n_batch=2048,
                                     n_ubatch=512, cache_prompt=False)
        for n in npl:
            prompts = [[rng.choice(pool) for _ in range(args.n_prompt)] for _ in range(n)]
            for mode, sampling in modes.items():
                python_steps(mode.endswith("-py"))
                if mode.startswith("engine-"):
                    assert engine is not None
                    one = functools.partial(measure_engine, engine,
                                            burst=args.engine_arrival == "burst")
                else:
                    one = functools.partial(measure, ctx)
                one(prompts, n_gen=min(args.n_gen, 8), sampling=sampling,
                    exact=args.bias)  # warm-up
                runs = [one(prompts, n_gen=args.n_gen, sampling=sampling, exact=args.bias)
                        for _ in range(args.runs)]
                python_steps(False)
                best = max(runs, key=lambda r: r["tokens_per_s"])
                report["llamakit"].append({"npl": n, "sampling": mode, **best, "runs": runs})
                print(f"llamakit npl {n} {mode}: {best['tokens_per_s']:,.1f} tok/s "
                      f"(decode {best['decode_ms']:.0f} ms, host {best['host_ms']:.0f} ms, "
                      f"{best['generated']} tokens)",
                      file=sys.stderr, flush=True)
        if engine is not None:
            engine.close()
        if args.profile:
            prompts = [[rng.choice(pool) for _ in range(args.n_prompt)]
                       for _ in range(args.profile)]
            profiler = cProfile.Profile()
            profiler.enable()
            measure(ctx, prompts, n_gen=args.n_gen, sampling=every["default"], exact=args.bias)
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
            report["profile"] = text.getvalue()
    print(markdown(report))
    if report.get("profile"):
        print(report["profile"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def markdown(report: dict[str, Any]) -> str:
    # llama-batched-bench's own "S t/s" counts prompt tokens too: generated tokens over its
    # total time is pl * tg / t.
    theirs = {row["pl"]: row["pl"] * row["tg"] / row["t"]
              for row in report.get("llama_batched_bench", [])}
    single = {row["sampling"]: row["tokens_per_s"] for row in report["llamakit"]
              if row["npl"] == 1}
    lines = ["| sequences | sampling | llamakit tok/s | x its 1 sequence | decode ms / host ms "
             "(llamakit) | llama-batched-bench tok/s | ratio |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for npl, speed in theirs.items():
        lines.append(f"| {npl} | (random tokens) | | | | {speed:,.1f} | 1 |")
    for row in report["llamakit"]:
        speed = theirs.get(row["npl"])
        base = single.get(row["sampling"])
        scale = "" if base is None else f"{row['tokens_per_s'] / base:.1f}"
        ratio = "" if speed is None else f"{row['tokens_per_s'] / speed:.3f}"
        lines.append(
            f"| {row['npl']} | {row['sampling']} | {row['tokens_per_s']:,.1f} | {scale} | "
            f"{row['decode_ms']:.0f} / {row['host_ms']:.0f} | "
            f"{'' if speed is None else f'{speed:,.1f}'} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
