"""Where a ``Context.generate`` call spends its host time around the prompt's decode.

    python benchmarks/micro/generate_phases.py [MODEL.gguf] [--backend cpu] [--n-prompt 512]
        [--calls 60] [--json OUT]

Without a model: the tiny synthetic one (``write_llama_model``), CPU, one thread. Each call
is ``generate(prompt, max_new_tokens=1, temperature=0)`` after ``ctx.reset()`` (as
``gpu/parity.py``'s "generate pp" row), with timestamps taken around the context's
``lk_decode_interruptible`` and the shim's ``lk_sampler_sample_piece`` (the handle's
``lib`` and ``sample_piece_at`` wrapped), so each call splits into: before the decode
(argument checks, sampling settings, chain set-up, prompt cache, batch), the decode,
decode-to-sample (the step's bookkeeping), the sample (it waits for a GPU's logits), and
after the sample (results). Medians over ``--calls`` calls after 10 unmeasured ones; the
same with the decode stubbed out (returns 0 at once: the pure Python and cffi cost, no cache
effects of a real decode) for comparison.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import llamakit
import llamakit._native.step as step_module

PHASES = ("before_decode", "decode", "decode_to_sample", "sample", "after_sample", "total")


def measure(ctx: llamakit.Context, prompt: list[int], calls: int, *,
            stub: bool) -> dict[str, float]:
    handle = ctx._handle
    lib = handle.lib
    real_decode = lib.lk_decode_interruptible
    real_sample = step_module.sample_piece_at
    marks: dict[str, float] = {}

    class Timed:
        def __getattr__(self, name: str) -> Any:
            return getattr(lib, name)

        def lk_decode_interruptible(self, *args: Any) -> Any:
            marks["d0"] = time.perf_counter()
            status = 0 if stub else real_decode(*args)
            marks["d1"] = time.perf_counter()
            return status

    def timed_sample(*args: Any, **kwargs: Any) -> Any:
        marks["s0"] = time.perf_counter()
        out = real_sample(*args, **kwargs)
        marks["s1"] = time.perf_counter()
        return out

    handle.lib = Timed()
    step_module.sample_piece_at = timed_sample  # type: ignore[assignment]
    rows: list[dict[str, float]] = []
    try:
        for i in range(calls + 10):
            ctx.reset()
            marks.clear()
            started = time.perf_counter()
            ctx.generate(prompt, max_new_tokens=1, temperature=0)
            ended = time.perf_counter()
            if i < 10 or not {"d0", "s0"} <= marks.keys():
                continue
            rows.append({"before_decode": marks["d0"] - started,
                         "decode": marks["d1"] - marks["d0"],
                         "decode_to_sample": marks["s0"] - marks["d1"],
                         "sample": marks["s1"] - marks["s0"],
                         "after_sample": ended - marks["s1"], "total": ended - started})
    finally:
        handle.lib = lib
        step_module.sample_piece_at = real_sample
    if not rows:
        raise RuntimeError("no call went through lk_decode_interruptible and "
                           "lk_sampler_sample_piece (Ctrl-C handler replaced? run as main)")
    return {phase: statistics.median(r[phase] for r in rows) * 1e6 for phase in PHASES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path)
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--n-prompt", type=int, default=512)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            from llamakit.testing import write_llama_model
            path = write_llama_model(Path(tmp) / "tiny.gguf")
        with llamakit.load_model(path, backend=args.backend, n_gpu_layers=-1) as model, \
                model.new_context(n_ctx=args.n_prompt + 16, n_batch=max(args.n_prompt, 512),
                                  n_ubatch=min(args.n_prompt, 512),
                                  **({"n_threads": 1} if args.model is None else {})) as ctx:
            rng = random.Random(0)
            prompt = [rng.randrange(100, model.n_vocab) for _ in range(args.n_prompt)]
            result = {"model": str(args.model or "tiny synthetic"), "backend": args.backend,
                      "n_prompt": args.n_prompt, "calls": args.calls,
                      "real": measure(ctx, prompt, args.calls, stub=False),
                      "stubbed": measure(ctx, prompt, args.calls, stub=True)}
    print(f"generate({args.n_prompt}-token prompt, max_new_tokens=1) on {result['model']} "
          f"({args.backend}), medians of {args.calls} calls, microseconds:")
    print("| decode | " + " | ".join(PHASES) + " |")
    print("| --- |" + " --- |" * len(PHASES))
    for kind in ("real", "stubbed"):
        print(f"| {kind} | " + " | ".join(f"{result[kind][p]:,.1f}" for p in PHASES) + " |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
