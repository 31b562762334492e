#!/usr/bin/env python3
"""Prompt processing and generation speed of one model on each available backend.

    python benchmarks/cpu_vs_gpu.py --model M.gguf [--backends cpu,vulkan] [--runs 5]
    python benchmarks/cpu_vs_gpu.py --synthetic tiny        # writes a small model first

For each backend: load with every layer offloaded, one warm-up (excluded: the first
Vulkan run compiles pipelines), then ``--runs`` repetitions of pp (evaluate a prompt of
``--n-prompt`` random tokens) and tg (generate ``--n-gen`` tokens greedily after one
token). Reports the median tokens/s. Writes JSON (``--json``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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


def _measure(model: llamakit.Model, args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    specials = set(model.special_tokens)
    pool = [t for t in range(model.n_vocab) if t not in specials]
    prompt = [int(t) for t in rng.choice(pool, size=args.n_prompt)]
    pp: list[float] = []
    tg: list[float] = []
    with model.new_context(n_ctx=args.n_prompt + args.n_gen + 8, n_batch=args.n_prompt,
                           n_ubatch=min(args.n_prompt, 512), n_threads=args.threads) as ctx:
        for run in range(args.runs + 1):
            ctx.reset()
            started = time.perf_counter()
            ctx.generate(prompt, max_new_tokens=1, temperature=0)
            pp_s = time.perf_counter() - started
            ctx.reset()
            result = ctx.generate(prompt[:1], max_new_tokens=args.n_gen, temperature=0)
            if run == 0:
                continue  # warm-up
            pp.append(args.n_prompt / pp_s)
            tg.append(result.timings.generated_tokens_per_s)
    return {"pp_tokens_per_s": statistics.median(pp), "tg_tokens_per_s": statistics.median(tg),
            "pp_runs": pp, "tg_runs": tg}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path)
    source.add_argument("--synthetic", choices=sorted(SHAPES))
    parser.add_argument("--vocab", default="llama-spm")
    parser.add_argument("--dtype", default="f16", choices=["f32", "f16"])
    parser.add_argument("--backends", default=None, help="comma list (default: all available)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n-prompt", type=int, default=512)
    parser.add_argument("--n-gen", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs must be at least 5")

    model_path = args.model
    if model_path is None:
        from llamakit.testing import write_llama_model
        model_path = Path(tempfile.gettempdir()) / f"llamakit-bench-{args.synthetic}-{args.dtype}.gguf"
        if not model_path.exists():
            write_llama_model(model_path, vocab=args.vocab, dtype=args.dtype,
                              **SHAPES[args.synthetic])
    names = (args.backends.split(",") if args.backends else
             [s.name for s in llamakit.backends() if s.available])
    rows = []
    for name in names:
        with llamakit.load_model(model_path, backend=name, n_gpu_layers=-1) as model:
            measured = _measure(model, args)
            devices = model.offload.devices or ("CPU",)
            rows.append({"backend": name, "devices": list(devices),
                         "model": str(model_path), "size_bytes": model.info.size,
                         "n_params": model.info.n_params, **measured})
    report = {"n_prompt": args.n_prompt, "n_gen": args.n_gen, "runs": args.runs,
              "threads": args.threads, "results": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(f"| backend | devices | pp{args.n_prompt} tok/s | tg{args.n_gen} tok/s |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['backend']} | {', '.join(row['devices'])} | "
              f"{row['pp_tokens_per_s']:,.1f} | {row['tg_tokens_per_s']:,.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
