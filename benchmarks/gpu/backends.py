#!/usr/bin/env python3
"""Prompt processing and generation speed of one model on each available backend.

    python benchmarks/gpu/backends.py --model M.gguf [--backends cpu,vulkan] [--runs 5]
    python benchmarks/gpu/backends.py --synthetic tiny        # writes a small model first
    python benchmarks/gpu/backends.py --model M.gguf --backends vulkan \\
        --llama-bench build/bin/llama-bench --bandwidth-tbs 3.35   # next to llama.cpp's own

For each backend: load with ``--n-gpu-layers`` (default all), one warm-up (excluded: the
first Vulkan run compiles pipelines), then ``--runs`` repetitions of

- pp: evaluate a prompt of ``--n-prompt`` random tokens and sample one token (wall clock);
- tg: from a one-token prompt, generate ``--n-gen`` tokens greedily: ``n_gen`` decodes of
  one token and ``n_gen`` samplings (wall clock), as llama-bench's tg does its ``n_gen``
  one-token decodes. A random model can hit an end-of-generation token early; the warm-up
  picks a first token whose greedy continuation runs the full length.

Reports the median tokens/s. With ``--llama-bench BIN``, llama.cpp's llama-bench runs on
the same model with the same sizes (``-p N -n N -r RUNS -ngl 99``), its per-run samples give
its median too, and the rows of ``--llama-bench-backend`` get the ratio to it. With
``--bandwidth-tbs``, the share of that memory bandwidth used in generation is reported,
taking the bytes read per token as the model's tensor bytes (every weight is read once per
token; the token-embedding table is the exception, one row of it is read). Writes JSON
(``--json``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import llamakit

SHAPES = {
    "tiny": {"n_embd": 256, "n_layer": 4, "n_head": 8, "n_head_kv": 4, "n_ff": 512},
    "1b": {"n_embd": 2048, "n_layer": 16, "n_head": 32, "n_head_kv": 8, "n_ff": 8192},
    "8b": {"n_embd": 4096, "n_layer": 32, "n_head": 32, "n_head_kv": 8, "n_ff": 14336},
}
_FIRST_TOKEN_TRIES = 16


def write_synthetic(shape: str, path: Path, *, vocab: str = "llama-spm", dtype: str = "f16",
                    reuse_weights: bool = True) -> Path:
    """Write the synthetic model of ``shape`` (a key of SHAPES) to ``path`` unless present."""
    from llamakit.testing import write_llama_model

    if not path.exists():
        started = time.perf_counter()
        write_llama_model(path, vocab=vocab, dtype=dtype,  # type: ignore[arg-type]
                          reuse_weights=reuse_weights, **SHAPES[shape])
        print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB) in "
              f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    return path


def _first_token(ctx: llamakit.Context, pool: list[int], n_gen: int) -> tuple[int, float]:
    """A first token whose greedy continuation reaches n_gen tokens, and that run's time
    (the warm-up)."""
    for token in pool[:_FIRST_TOKEN_TRIES]:
        ctx.reset()
        started = time.perf_counter()
        result = ctx.generate([token], max_new_tokens=n_gen, temperature=0)
        elapsed = time.perf_counter() - started
        if len(result.tokens) == n_gen:
            return token, elapsed
    raise RuntimeError(f"no first token among {_FIRST_TOKEN_TRIES} gives {n_gen} tokens "
                       "without an end-of-generation token")


def measure(model: llamakit.Model, *, n_prompt: int, n_gen: int, runs: int,
            threads: int) -> dict[str, Any]:
    """Median pp and tg tokens/s of ``model`` over ``runs`` runs after one warm-up."""
    rng = np.random.default_rng(0)
    specials = set(model.special_tokens)
    pool = [t for t in range(model.n_vocab) if t not in specials]
    prompt = [int(t) for t in rng.choice(pool, size=n_prompt)]
    firsts = [int(t) for t in rng.choice(pool, size=_FIRST_TOKEN_TRIES, replace=False)]
    pp: list[float] = []
    tg: list[float] = []
    with model.new_context(n_ctx=n_prompt + n_gen + 8, n_batch=n_prompt,
                           n_ubatch=min(n_prompt, 512), n_threads=threads) as ctx:
        ctx.reset()
        ctx.generate(prompt, max_new_tokens=1, temperature=0)  # warm-up, pp shapes
        first, warm_tg_s = _first_token(ctx, firsts, n_gen)  # warm-up, tg shapes
        for _ in range(runs):
            ctx.reset()
            started = time.perf_counter()
            ctx.generate(prompt, max_new_tokens=1, temperature=0)
            pp.append(n_prompt / (time.perf_counter() - started))
            ctx.reset()
            started = time.perf_counter()
            result = ctx.generate([first], max_new_tokens=n_gen, temperature=0)
            elapsed = time.perf_counter() - started
            if len(result.tokens) != n_gen:
                raise RuntimeError(f"greedy run gave {len(result.tokens)} tokens, not {n_gen}")
            tg.append(n_gen / elapsed)
    return {"pp_tokens_per_s": statistics.median(pp), "tg_tokens_per_s": statistics.median(tg),
            "pp_runs": pp, "tg_runs": tg, "warmup_tg_tokens_per_s": n_gen / warm_tg_s}


def run_llama_bench(binary: Path, model: Path, *, n_prompt: int, n_gen: int, runs: int,
                    threads: int, n_gpu_layers: int) -> dict[str, Any]:
    """llama-bench on ``model``: the median of its per-run samples and its own mean."""
    command = [str(binary), "-m", str(model), "-p", str(n_prompt), "-n", str(n_gen),
               "-r", str(runs), "-ngl", str(99 if n_gpu_layers < 0 else n_gpu_layers),
               "-t", str(threads), "-o", "json"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    tests = json.loads(done.stdout)
    out: dict[str, Any] = {"command": " ".join(command)}
    for test in tests:
        kind = "pp" if test["n_gen"] == 0 else "tg"
        samples = [float(s) for s in test["samples_ts"]]
        out[f"{kind}_tokens_per_s"] = statistics.median(samples)
        out[f"{kind}_mean_tokens_per_s"] = float(test["avg_ts"])
        out[f"{kind}_runs"] = samples
    first = tests[0]
    out.update({key: first.get(key) for key in ("build_commit", "backends", "gpu_info",
                                                "model_type", "model_size", "model_n_params",
                                                "n_batch", "n_ubatch", "flash_attn")})
    return out


def _share(tokens_per_s: float, size: int, bandwidth_tbs: float | None) -> float | None:
    return None if bandwidth_tbs is None else tokens_per_s * size / (bandwidth_tbs * 1e12)


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table (one row per backend, then llama-bench's)."""
    n_prompt, n_gen = report["n_prompt"], report["n_gen"]
    lines = [f"| engine | devices | size GiB | pp{n_prompt} tok/s | tg{n_gen} tok/s | "
             "pp / llama-bench | tg / llama-bench | tg bandwidth share |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]

    def pct(value: float | None) -> str:
        return "" if value is None else f"{value:.1%}"

    def ratio(value: float | None) -> str:
        return "" if value is None else f"{value:.3f}"

    for row in report["results"]:
        lines.append(
            f"| llamakit {row['backend']} | {', '.join(row['devices'])} | "
            f"{row['size_bytes'] / 2**30:.2f} | {row['pp_tokens_per_s']:,.1f} | "
            f"{row['tg_tokens_per_s']:,.1f} | {ratio(row.get('pp_ratio'))} | "
            f"{ratio(row.get('tg_ratio'))} | {pct(row.get('tg_bandwidth_share'))} |")
    bench = report.get("llama_bench")
    if bench:
        lines.append(
            f"| llama-bench ({bench.get('backends')}) | {bench.get('gpu_info')} | "
            f"{bench['model_size'] / 2**30:.2f} | {bench['pp_tokens_per_s']:,.1f} | "
            f"{bench['tg_tokens_per_s']:,.1f} | 1 | 1 | {pct(bench.get('tg_bandwidth_share'))} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path)
    source.add_argument("--synthetic", choices=sorted(SHAPES))
    parser.add_argument("--vocab", default="llama-spm")
    parser.add_argument("--dtype", default="f16", choices=["f32", "f16"])
    parser.add_argument("--model-path", type=Path, default=None,
                        help="where --synthetic writes its model (default: the temp folder)")
    parser.add_argument("--backends", default=None, help="comma list (default: all available)")
    parser.add_argument("--n-gpu-layers", type=int, default=-1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n-prompt", type=int, default=512)
    parser.add_argument("--n-gen", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--llama-bench", type=Path, default=None,
                        help="llama.cpp's llama-bench binary, run on the same model")
    parser.add_argument("--llama-bench-backend", default="vulkan",
                        help="the backend whose rows get the ratio to llama-bench")
    parser.add_argument("--bandwidth-tbs", type=float, default=None,
                        help="memory bandwidth (TB/s) for the generation bandwidth share")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs must be at least 5")

    model_path = args.model
    if model_path is None:
        model_path = args.model_path or Path(tempfile.gettempdir()) / (
            f"llamakit-bench-{args.synthetic}-{args.dtype}.gguf")
        write_synthetic(args.synthetic, model_path, vocab=args.vocab, dtype=args.dtype)
    names = (args.backends.split(",") if args.backends else
             [s.name for s in llamakit.backends() if s.available])
    # llama-bench runs right after the backend it is compared with, before the others, so
    # that the two measurements of one device follow each other.
    if args.llama_bench is not None and args.llama_bench_backend in names:
        names.remove(args.llama_bench_backend)
        names.insert(0, args.llama_bench_backend)
    rows = []
    report: dict[str, Any] = {"n_prompt": args.n_prompt, "n_gen": args.n_gen,
                              "runs": args.runs, "threads": args.threads,
                              "bandwidth_tbs": args.bandwidth_tbs, "results": rows}
    for index, name in enumerate(names):
        with llamakit.load_model(model_path, backend=name,
                                 n_gpu_layers=args.n_gpu_layers) as model:
            measured = measure(model, n_prompt=args.n_prompt, n_gen=args.n_gen,
                               runs=args.runs, threads=args.threads)
            devices = model.offload.devices or ("CPU",)
            rows.append({"backend": name, "devices": list(devices),
                         "n_layers_offloaded": model.offload.n_layers_offloaded,
                         "model": str(model_path), "size_bytes": model.info.size,
                         "n_params": model.info.n_params, **measured,
                         "tg_bandwidth_share": _share(measured["tg_tokens_per_s"],
                                                      model.info.size, args.bandwidth_tbs)})
        if args.llama_bench is not None and index == 0:
            bench = run_llama_bench(args.llama_bench, model_path, n_prompt=args.n_prompt,
                                    n_gen=args.n_gen, runs=args.runs, threads=args.threads,
                                    n_gpu_layers=args.n_gpu_layers)
            bench["tg_bandwidth_share"] = _share(bench["tg_tokens_per_s"],
                                                 bench["model_size"], args.bandwidth_tbs)
            report["llama_bench"] = bench
    bench = report.get("llama_bench")
    for row in rows:
        if bench is not None and row["backend"] == args.llama_bench_backend:
            row["pp_ratio"] = row["pp_tokens_per_s"] / bench["pp_tokens_per_s"]
            row["tg_ratio"] = row["tg_tokens_per_s"] / bench["tg_tokens_per_s"]
    table = markdown(report)
    report["markdown"] = table
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
