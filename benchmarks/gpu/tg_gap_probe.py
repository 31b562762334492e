#!/usr/bin/env python3
"""Where a generated token's time goes beyond llama-bench's tg loop, on one GPU.

    python3 benchmarks/gpu/tg_gap_probe.py MODEL.gguf --llama-bench BIN [--backend cuda]
        [--reps 5] [--json OUT]

llama-bench's tg loop is ``llama_decode`` of one token, then ``llama_synchronize``, with
nothing between tokens. A generation samples between them. This script runs, in one
context built as ``parity.py`` builds it (n_ctx 640, n_batch/n_ubatch 512), 128-token loops
from an empty memory, interleaved, each ``--reps`` times, and reports the wall time and
llama.cpp's own ``t_eval`` per token (medians):

- ``sync``: decode + synchronize through cffi, nothing else (llama-bench's loop from Python);
- ``sync+gapN``: the same with N µs of busy host work after each synchronize (what a
  sampler costs), to see whether llama.cpp's own time grows with the gap between tokens;
- ``sample``: decode + ``lk_sampler_sample`` (greedy after a logit_bias ban of the EOG
  tokens: the parity benchmark's tg);
- ``generate``: ``Context.generate`` (its native token runs) with the same ban;
- ``generate-nobias``: without the ban (the shim's plain argmax path);
each at the context's default thread count and at ``n_threads=1`` (with full offload the
CPU only runs the token-embedding lookup), and llama-bench's tg128 at its default threads
and ``-t 1``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import llamakit

N_GEN = 128


def _spin(us: float) -> None:
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--llama-bench", type=Path)
    parser.add_argument("--backend", default="cuda")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {"model": str(args.model), "rows": {}}
    with llamakit.load_model(args.model, backend=args.backend, n_gpu_layers=-1) as model:
        ban = {t: float("-inf") for t in model.special_tokens if model.is_eog(t)}
        rng = random.Random(0)
        randoms = [rng.randrange(100, model.n_vocab) for _ in range(N_GEN)]
        ctx = model.new_context(n_ctx=640, n_batch=512, n_ubatch=512)
        handle = ctx._handle
        lib, ffi = handle.lib, handle.ffi
        from llamakit._context_knobs import default_threads as _default
        default_threads = _default()
        report["default_threads"] = default_threads
        token_buf = ffi.new("llama_token[1]")

        def loop(gap: float | None, sampler: Any = None) -> tuple[float, float]:
            ctx.reset()
            handle.reset_perf()
            with handle.pinned() as ptr:
                batch = lib.llama_batch_get_one(token_buf, 1)
                started = time.perf_counter()
                if sampler is None:
                    for token in randoms:
                        token_buf[0] = token
                        lib.llama_decode(ptr, batch)
                        lib.llama_synchronize(ptr)
                        if gap:
                            _spin(gap)
                else:
                    with sampler.pinned() as chain_ptr:
                        token = randoms[0]
                        for _ in range(N_GEN):
                            token_buf[0] = token
                            lib.llama_decode(ptr, batch)
                            token = lib.lk_sampler_sample(chain_ptr, ptr, -1,
                                                          sampler._promise)
                wall = time.perf_counter() - started
            perf = handle.perf()
            return wall * 1e6 / N_GEN, (perf["t_eval_ms"] + perf["t_p_eval_ms"]) * 1e3 / N_GEN

        def generate(bias: bool) -> tuple[float, float]:
            ctx.reset()
            started = time.perf_counter()
            result = ctx.generate([randoms[0]], max_new_tokens=N_GEN, temperature=0,
                                  logit_bias=ban if bias else None)
            wall = time.perf_counter() - started
            native = result.timings.native
            n = max(len(result.tokens), 1)
            return wall * 1e6 / n, (native["t_eval_ms"] + native["t_p_eval_ms"]) * 1e3 / n

        sample_chain = llamakit.SamplerChain(model).add_logit_bias(ban).add_greedy()
        variants: dict[str, Any] = {
            "sync": lambda: loop(None),
            "sync+gap10": lambda: loop(10),
            "sync+gap30": lambda: loop(30),
            "sync+gap100": lambda: loop(100),
            "sample": lambda: loop(None, sample_chain._handle),
            "generate": lambda: generate(True),
            "generate-nobias": lambda: generate(False),
        }
        for threads in (default_threads, 1):
            handle.set_threads(threads, threads)
            for run in variants.values():
                run()  # warm-up
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
            for _ in range(args.reps):
                for name, run in variants.items():
                    samples[name].append(run())
            for name, values in samples.items():
                key = f"{name} t{threads}"
                report["rows"][key] = {
                    "wall_us": statistics.median(v[0] for v in values),
                    "llama_us": statistics.median(v[1] for v in values)}
        sample_chain.close()
        ctx.close()
    if args.llama_bench:
        for threads in (None, 1):
            command = [str(args.llama_bench), "-m", str(args.model), "-p", "0", "-n",
                       str(N_GEN), "-r", str(args.reps), "-ngl", "99", "-o", "json"]
            if threads:
                command += ["-t", str(threads)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            test = json.loads(out)[0]
            report["rows"][f"llama-bench tg t{threads or test.get('n_threads')}"] = {
                "wall_us": 1e6 / statistics.median(test["samples_ts"]), "llama_us": None}
    for key, row in report["rows"].items():
        llama = "" if row["llama_us"] is None else f"{row['llama_us']:9.1f}"
        print(f"{key:28s} wall {row['wall_us']:9.1f} us/token  llama.cpp {llama} us/token")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
