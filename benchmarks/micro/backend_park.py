"""Wall time of consecutive short ``generate`` calls with ``backend_sampling=True``: what
keeping the chain attached between calls with the same settings saves (each attach makes
llama.cpp re-reserve its graphs before the next decode).

    nice python benchmarks/micro/backend_park.py [--model PATH] [--calls 20] [--tokens 16]

Runs ``--calls`` calls of ``ctx.generate("Hello", max_new_tokens=--tokens, temperature=0)``
on the CPU backend, with and without backend sampling, and prints the median and minimum
wall ms per call and how many times llama.cpp logged ``sched_reserve: reserving ...``
during them. Run it with another checkout's interpreter for the figures before a change.
The default model is the small gemma of the model cache.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import llamakit


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


if __name__ == "__main__":
    main()
