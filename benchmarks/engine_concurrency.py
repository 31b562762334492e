"""Aggregate generated tokens/s of ``llamakit.Engine`` at 1, 4 and 16 concurrent requests,
against the same requests run one at a time with ``Context.generate``.

    python benchmarks/engine_concurrency.py [--model PATH] [--tokens 64] [--threads N]

Default model: the embedded demo model. Both sides warm up with one short request first. Each request is a different short prompt and
generates exactly ``--tokens`` tokens (end-of-generation banned), greedy. The engine has
as many slots as requests (``n_parallel = concurrency``, ``n_ctx = 512`` per slot).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import llamakit


def prompts(n: int) -> list[str]:
    return [f"What is {i} + {2 * i + 1}?" for i in range(n)]


def no_eog(model: llamakit.Model) -> dict[int, float]:
    return {t: float("-inf") for t in range(model.info.n_vocab) if model._handle.is_eog(t)}


def one_at_a_time(model: llamakit.Model, n: int, tokens: int, threads: int) -> float:
    bias = no_eog(model)
    with model.new_context(n_ctx=512, n_threads=threads) as ctx:
        ctx.generate("warm up", max_new_tokens=8, temperature=0)
        started = time.perf_counter()
        total = 0
        for prompt in prompts(n):
            ctx.reset()
            total += len(ctx.generate(prompt, max_new_tokens=tokens, temperature=0,
                                      logit_bias=bias).tokens)
        return total / (time.perf_counter() - started)


def engine_run(model: llamakit.Model, n: int, tokens: int, threads: int
               ) -> tuple[float, float]:
    bias = no_eog(model)
    with llamakit.Engine(model, n_parallel=n, n_ctx=512 * n, n_threads=threads,
                         cache_prompt=False) as engine:
        async def main() -> int:
            results = await asyncio.gather(*[
                engine.generate(p, max_new_tokens=tokens, temperature=0, logit_bias=bias)
                for p in prompts(n)])
            return sum(len(r.tokens) for r in results)

        engine.submit("warm up", max_new_tokens=8, temperature=0).result()
        started = time.perf_counter()
        total = asyncio.run(main())
        elapsed = time.perf_counter() - started
        ttft = sorted(engine.stats().ttft_seconds[1:])
    return total / elapsed, ttft[len(ttft) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    model = (llamakit.load_model(args.model, backend=args.backend) if args.model
             else llamakit.demo_model(backend=args.backend))
    print(f"model: {args.model or 'demo'}  backend: {args.backend}  threads: {args.threads}"
          f"  tokens/request: {args.tokens}")
    print("| concurrent requests | one at a time tok/s | engine tok/s | speed-up | "
          "engine TTFT p50 ms |")
    print("| --- | --- | --- | --- | --- |")
    for n in args.concurrency:
        serial = one_at_a_time(model, n, args.tokens, args.threads)
        batched, ttft = engine_run(model, n, args.tokens, args.threads)
        print(f"| {n} | {serial:,.0f} | {batched:,.0f} | {batched / serial:.2f}x | "
              f"{ttft * 1000:.0f} |")
    model.close()


if __name__ == "__main__":
    main()
