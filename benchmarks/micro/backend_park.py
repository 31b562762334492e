"""Wall time of consecutive short ``generate`` calls with ``backend_sampling=True``: what
keeping the chain attached between calls with the same settings saves (each attach makes
llama.cpp re-reserve its graphs before the next decode).

    nice python benchmarks/micro/backend_park.py [--model PATH] [--calls 20] [--tokens 16]

Runs ``--calls`` calls of ``ctx.generate("Hello", max_new_tokens=--tokens, temperature=0)``
on the CPU backend, with and without backend sampling, and prints the median and minimum
wall ms per call and how many times llama.cpp logged ``sched_reserve: reserving ...``
during them. Run it with another checkout's interpreter for the figures before a change.
Where parking exists, it then times what a re-reserve costs alone: the decode of the
tokenized "Hello" and its sample on an emptied context, after a fresh attach (the
re-reserve runs in that decode), after a rebind of the parked copy, and on the host
(median of ``--calls`` each). The default model is the small gemma of the model cache.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import llamakit
from llamakit._native.sampler import attach_backend, detach_backend


def _decode_after(ctx: llamakit.Context, mode: str, calls: int) -> float:
    """Median ms of attach (or rebind) + decode of the prompt + sample, on an emptied
    context; ``mode``: "attach", "rebind" or "host"."""
    from llamakit._native.sampler import park_backend

    model, handle = ctx.model, ctx._handle
    tokens = model.tokenize("Hello")
    times = []
    for _ in range(calls):
        chain = llamakit.SamplerChain(model).add_greedy()
        ctx.reset()
        start = time.perf_counter()
        if mode != "host":
            attach_backend(handle, 0, chain._handle,
                           key="greedy" if mode == "rebind" else None)
        handle.decode(tokens, False)
        chain._handle.sample(handle, -1)
        times.append((time.perf_counter() - start) * 1000)
        if mode == "rebind":
            park_backend(handle, 0, "greedy")
        elif mode == "attach":
            detach_backend(handle, 0)
        chain.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    path = args.model or next(
        (Path.home() / ".cache/llamakit/models").glob("*/gemma-3-270m-q4_k_m.gguf"))
    with llamakit.load_model(path, backend="cpu") as model, \
            model.new_context(n_ctx=512, n_threads=args.threads) as ctx:
        native = ctx._handle.native
        parks = hasattr(native.lib, "lk_backend_sampler_rebind")
        print(f"{path.name}, {args.calls} calls of {args.tokens} tokens, "
              f"parking {'available' if parks else 'absent'}")
        for graph in (True, False, True):
            reserves: list[str] = []

            def listen(level: int, line: str, seen: list[str] = reserves) -> None:
                if "reserving ..." in line:
                    seen.append(line)

            times = []
            with native.log_listener(listen):
                for _ in range(args.calls):
                    start = time.perf_counter()
                    ctx.generate("Hello", max_new_tokens=args.tokens, temperature=0,
                                 backend_sampling=graph)
                    times.append((time.perf_counter() - start) * 1000)
            print(f"backend_sampling={graph!s:5}: median {statistics.median(times):7.2f} ms, "
                  f"min {min(times):7.2f} ms a call; {len(reserves)} re-reserves")
        if parks:
            ctx.reset()
            found: dict[str, list[float]] = {}
            for mode in ("attach", "rebind", "host", "attach", "rebind"):
                found.setdefault(mode, []).append(_decode_after(ctx, mode, args.calls))
            print("decode of the prompt + sample, median ms: " + ", ".join(
                f"{m} {' / '.join(f'{t:.2f}' for t in v)}" for m, v in found.items()))


if __name__ == "__main__":
    main()
