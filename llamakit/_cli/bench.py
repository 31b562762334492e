"""``llamakit bench``: prompt-processing and generation speed, like a small llama-bench.

Measured through llamakit's engine, the handle layer that ``Context`` drives: ``ppN`` is one
prompt of N random tokens decoded in ``n_batch`` chunks, ``tgN`` is N single-token decodes
(random tokens, no sampling, as llama-bench does); each repetition starts from an empty KV
cache and ends by reading the logits (which waits for the backend). One warm-up run of each
test comes first. The table has llama-bench's columns; t/s is the mean and standard
deviation over the repetitions.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from ._common import cli_config, new_context, open_model, write
from ._options import add_config_flags

if TYPE_CHECKING:
    from .._context import Context

__all__ = ["register"]


def _counts(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated token counts, got {text!r}"
                                         ) from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected counts >= 0, got {text!r}")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _run_pp(ctx: Context, tokens: list[int]) -> float:
    handle = ctx._handle  # the engine itself: no tokenizing, sampling or text assembly
    ctx.reset()
    started = time.perf_counter()
    for i in range(0, len(tokens), ctx.n_batch):
        handle.decode(tokens[i:i + ctx.n_batch])
    handle.logits(-1)  # waits for the backend
    elapsed = time.perf_counter() - started
    ctx.reset()
    return elapsed


def _run_tg(ctx: Context, tokens: list[int]) -> float:
    handle = ctx._handle
    ctx.reset()
    started = time.perf_counter()
    for token in tokens:
        handle.decode([token])
    handle.logits(-1)
    elapsed = time.perf_counter() - started
    ctx.reset()
    return elapsed


def _cmd_bench(args: argparse.Namespace) -> int:
    config, _ = cli_config(args, model=args.model)
    tests = [("pp", n) for n in args.n_prompt if n > 0] + [("tg", n) for n in args.n_gen if n > 0]
    if not tests:
        raise ConfigError("nothing to measure: -p and -n are all 0")
    need = max(args.n_prompt) + max(args.n_gen)
    n_ctx = config.context.n_ctx if config.context.n_ctx is not None else max(need, 1)
    if n_ctx < need:
        raise ConfigError(f"--n-ctx {n_ctx} is smaller than the longest test needs "
                          f"({max(args.n_prompt)} + {max(args.n_gen)} = {need} tokens)",
                          key="context.n_ctx")
    rows = []
    with open_model(config) as model, new_context(model, config, n_ctx=n_ctx) as ctx:
        rng = random.Random(args.seed_tokens)
        info = model.info
        for kind, n in tests:
            tokens = [rng.randrange(model.n_vocab) for _ in range(n)]
            run = _run_pp if kind == "pp" else _run_tg
            run(ctx, tokens)  # warm-up
            speeds = [n / run(ctx, tokens) for _ in range(args.repetitions)]
            rows.append({
                "model": info.description, "size": info.size, "params": info.n_params,
                "backend": model.backend, "n_gpu_layers": model.n_gpu_layers,
                "n_threads": ctx.n_threads, "n_batch": ctx.n_batch, "n_ubatch": ctx.n_ubatch,
                "test": f"{kind}{n}", "n_tokens": n, "repetitions": args.repetitions,
                "tokens_per_s": statistics.fmean(speeds),
                "stddev": statistics.stdev(speeds) if len(speeds) > 1 else 0.0,
                "samples": speeds})
    if args.output == "json":
        write(json.dumps(rows, indent=2) + "\n")
        return 0
    header = ["model", "size", "params", "backend", "ngl", "threads", "n_batch", "test", "t/s"]
    table = [[r["model"], f"{r['size'] / 2**20:.2f} MiB", f"{r['params'] / 1e6:.2f} M",
              r["backend"], str(r["n_gpu_layers"]), str(r["n_threads"]), str(r["n_batch"]),
              r["test"], f"{r['tokens_per_s']:.2f} ± {r['stddev']:.2f}"] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    right = {1, 2, 4, 5, 6, 7, 8}

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

    write(line(header) + "\n")
    write("| " + " | ".join(("-" * (w - 1) + ":") if i in right else "-" * w
                            for i, w in enumerate(widths)) + " |\n")
    for row in table:
        write(line(row) + "\n")
    return 0


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench", parents=parents, help="measure prompt and generation speed (llama-bench-like)",
        description="Measure tokens per second of prompt processing (ppN) and generation "
        "(tgN) of MODEL through llamakit's engine: random tokens, an empty KV cache per "
        "run, one warm-up run, the mean and standard deviation of -r runs.")
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="the .gguf file (default: -m, [model] path of the config)")
    p.add_argument("-p", "--n-prompt", type=_counts, default=[512], metavar="N[,N...]",
                   help="prompt lengths to test (default: 512; 0 skips)")
    p.add_argument("-n", "--n-gen", type=_counts, default=[128], metavar="N[,N...]",
                   help="numbers of generated tokens to test (default: 128; 0 skips)")
    p.add_argument("-r", "--repetitions", type=_positive, default=5, metavar="N",
                   help="runs per test (default: 5)")
    p.add_argument("-o", "--output", choices=["md", "json"], default="md",
                   help="a Markdown table (default) or JSON with every run's speed")
    p.add_argument("--seed-tokens", type=int, default=0, metavar="SEED",
                   help="seed of the random tokens (default: 0)")
    add_config_flags(p, ("model", "context"),
                     exclude=[("context", "seed"), ("context", "n_ctx")])
    p.add_argument("--n-ctx", dest="cfg:context.n_ctx", type=int, default=argparse.SUPPRESS,
                   metavar="INT", help="context length (default: the longest -p plus -n)")
    p.set_defaults(func=_cmd_bench)
