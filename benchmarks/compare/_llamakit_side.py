"""llamakit's side of the benchmark, in the harness's own process.

Two levels are timed:

* the engine: the handle layer (``ContextHandle.decode``, ``SamplerHandle.sample``) in a
  bare Python loop, which is what llamakit's generation loop costs without tokenizing,
  text assembly and result objects: ``pp`` is one ``decode`` of the prompt; ``tg`` is
  ``decode`` of one token then a greedy ``sample``, ``n`` times, from an empty cache (as
  ``llama-bench`` decodes ``n`` single tokens); ``decode_only`` is the same loop with
  random tokens and no sampling (``llama-bench``'s own loop, from Python);
* end to end: ``Context.generate``/``Context.stream`` from a text prompt (tokenize, prompt
  evaluation, sampling, detokenizing, stop handling, result).

Every call starts from an empty KV cache so no repetition profits from the previous one.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import llamakit
from llamakit._native.context import ContextHandle
from llamakit._native.sampler import SamplerHandle

__all__ = ["LlamakitSide", "SAMPLING"]

#: The two sampling settings, identical on both Python sides.
SAMPLING: dict[str, dict[str, Any]] = {
    "greedy": {"temperature": 0.0},
    "top_p": {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "seed": 1234},
}


class LlamakitSide:
    """A model and a context of llamakit's CPU backend, and the timed operations."""

    def __init__(self, path: Path, *, n_ctx: int, n_batch: int, n_ubatch: int, threads: int,
                 embeddings: bool = False, pooling: str | None = None,
                 n_seq_max: int = 1) -> None:
        started = time.perf_counter()
        self.model = llamakit.load_model(path, backend="cpu")
        self.load_s = time.perf_counter() - started
        self.ctx = self.model.new_context(n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_ubatch,
                                          n_threads=threads, embeddings=embeddings,
                                          pooling=pooling, n_seq_max=n_seq_max)
        self.handle = self.ctx._handle
        self.model_handle = self.model._handle
        self._rng = random.Random(0)

    def close(self) -> None:
        self.ctx.close()
        self.model.close()

    def _greedy(self) -> SamplerHandle:
        sampler = SamplerHandle.new(self.model_handle)
        sampler.add("greedy", {})
        return sampler

    def engine_pp(self, tokens: list[int]) -> dict[str, Any]:
        self.ctx.reset()
        self.handle.reset_perf()
        started = time.perf_counter()
        self.handle.decode(tokens)
        self.handle.logits(-1)  # synchronizes, as llama-bench does after the prompt
        wall = time.perf_counter() - started
        self.ctx.reset()
        return {"wall_s": wall, "n": len(tokens), "perf": self.handle.perf()}

    def engine_tg(self, n: int, *, sample: bool) -> dict[str, Any]:
        """``n`` single-token decodes from an empty cache; greedy sampling after each when
        ``sample``, else random next tokens without reading the logits."""
        handle, bos = self.handle, self.model.bos_token
        token = bos if bos is not None else 0
        randoms = [self._rng.randrange(self.model.n_vocab) for _ in range(n)]
        sampler = self._greedy() if sample else None
        self.ctx.reset()
        try:
            handle.reset_perf()
            started = time.perf_counter()
            if sampler is not None:
                clock = time.perf_counter
                sampling = 0.0
                for _ in range(n):
                    handle.decode([token])
                    mark = clock()
                    token = sampler.sample(handle)
                    sampling += clock() - mark
            else:
                for i in range(n):
                    handle.decode([token])
                    token = randoms[i]
            wall = time.perf_counter() - started
            if sampler is None:
                # Reading logits synchronizes, which closes llama.cpp's perf interval.
                handle.logits(-1)
            perf = handle.perf()
        finally:
            if sampler is not None:
                sampler.close()
            self.ctx.reset()
        result = {"wall_s": wall, "n": n, "perf": perf}
        if sampler is not None:
            result["sample_us"] = sampling / n * 1e6
        return result

    def sampler_cost(self, mode: str, n: int = 200) -> float:
        """Microseconds per ``sample`` call of a chain over the current logits (the C
        chain plus the Python call), without any decode in between."""
        sampler = SamplerHandle.new(self.model_handle)
        try:
            if mode == "greedy":
                sampler.add("greedy", {})
            else:
                s = SAMPLING["top_p"]
                sampler.add("top_k", {"k": s["top_k"]})
                sampler.add("top_p", {"p": s["top_p"]})
                sampler.add("min_p", {"p": s["min_p"]})
                sampler.add("temp", {"t": s["temperature"]})
                sampler.add("dist", {"seed": s["seed"]})
            self.ctx.reset()
            bos = self.model.bos_token
            self.handle.decode([bos if bos is not None else 0])
            sampler.sample(self.handle)
            started = time.perf_counter()
            for _ in range(n):
                sampler.sample(self.handle)
            return (time.perf_counter() - started) / n * 1e6
        finally:
            sampler.close()
            self.ctx.reset()

    def complete(self, prompt: str, max_tokens: int, mode: str, *,
                 stream: bool) -> dict[str, Any]:
        sampling = SAMPLING[mode]
        self.ctx.reset()
        first = None
        started = time.perf_counter()
        if stream:
            pieces = self.ctx.stream(prompt, max_new_tokens=max_tokens, **sampling)
            for _piece in pieces:
                if first is None:
                    first = time.perf_counter() - started
            wall = time.perf_counter() - started
            result = pieces.result
        else:
            result = self.ctx.generate(prompt, max_new_tokens=max_tokens, **sampling)
            wall = time.perf_counter() - started
        assert result is not None
        native = dict(result.timings.native)
        return {"wall_s": wall, "first_s": first, "n_gen": len(result.tokens),
                "n_prompt": len(result.prompt_tokens), "finish": result.finish_reason,
                "text_len": len(result.text), "text": result.text[:200],
                "perf": {k: native[k] for k in ("t_eval_ms", "n_eval", "t_p_eval_ms",
                                                "n_p_eval")}}

    @staticmethod
    @contextmanager
    def _decode_stubbed() -> Iterator[None]:
        """llama.cpp's decode replaced by a no-op (the Python wrapper around it still runs):
        what remains of a generation loop is llamakit's own per-token cost plus the C
        sampler, which keeps reading the logits of the last real decode."""
        real = ContextHandle._evaluate
        ContextHandle._evaluate = lambda self, batch, *, encode: 0  # type: ignore[method-assign]
        try:
            yield
        finally:
            ContextHandle._evaluate = real  # type: ignore[method-assign]

    def overhead(self, prompt: str, max_tokens: int, mode: str, *, stream: bool,
                 runs: int) -> dict[str, Any]:
        """``complete`` ``runs`` times with the decode stubbed out."""
        self.complete(prompt, 1, "greedy", stream=False)  # real logits to sample from
        walls, counts = [], []
        with self._decode_stubbed():
            for _ in range(runs):
                r = self.complete(prompt, max_tokens, mode, stream=stream)
                walls.append(r["wall_s"])
                counts.append(r["n_gen"])
        return {"walls_s": walls, "n_gen": counts}

    def engine_overhead(self, n: int, runs: int, *, sample: bool = True) -> dict[str, Any]:
        """``engine_tg`` ``runs`` times with the decode stubbed out (without ``sample``:
        only the Python loop and ``ContextHandle.decode``'s own Python work)."""
        bos = self.model.bos_token
        self.ctx.reset()
        self.handle.decode([bos if bos is not None else 0])
        walls = []
        with self._decode_stubbed():
            for _ in range(runs):
                sampler = self._greedy()
                token = bos if bos is not None else 0
                started = time.perf_counter()
                if sample:
                    for _ in range(n):
                        self.handle.decode([token])
                        token = sampler.sample(self.handle)
                else:
                    for _ in range(n):
                        self.handle.decode([token])
                walls.append(time.perf_counter() - started)
                sampler.close()
        self.ctx.reset()
        return {"walls_s": walls, "n_gen": [n] * runs}

    def embed(self, texts: list[str]) -> dict[str, Any]:
        started = time.perf_counter()
        vectors = self.ctx.embeddings(texts, normalize=False)
        return {"wall_s": time.perf_counter() - started, "n": int(vectors.shape[0]),
                "dim": int(vectors.shape[1])}
