#!/usr/bin/env python3
"""What a switch between prompt processing and token generation costs on a GPU, and what
would avoid it: raw ``ContextHandle`` loops (no tokenizer, no results), llama.cpp's own
time (perf counters) beside the wall clock, medians of ``--reps``.

    python3 benchmarks/gpu/switch_probe.py M.gguf [M2.gguf ...] [--backend cuda] \\
        [--reps 7] [--n-prompt 512] [--n-gen 128] [--json OUT] [--no-graphs-too]

Patterns, per model, each after one unmeasured run of itself:

- ``pp alone``: a ``--n-prompt`` prompt decoded and its logits read, back to back
  (llama-bench's pp);
- ``tg alone``: one token, then ``--n-gen`` greedy tokens (decode, host argmax),
  back to back (llama-bench's tg, with the sampling a generation needs);
- ``pp/tg alternating``: the two above one after the other (what ``generate`` meets:
  a prompt, then its tokens): pp and tg reported apart;
- ``split pp/tg``: as alternating, but the prompt's body decoded without outputs and
  its last token alone: the body's graph then lives in llama.cpp's other graph result
  (``gf_res_prev[n_outputs > 0]``), so it has another CUDA-graph key than the
  single-token graphs;
- ``tg, backend sampling kept``: tg alone with a greedy chain attached once for all
  repetitions (``attach_backend``), which ``generate`` does per call today;
- ``pp/tg alternating, backend sampling kept``: the same chain attached over the
  alternating pattern.

``--no-graphs-too`` runs everything again in a child process with
GGML_CUDA_DISABLE_GRAPHS=1 (read once by ggml-cuda), to show what CUDA graphs are worth.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import llamakit
from llamakit._native.sampler import SamplerHandle, attach_backend, detach_backend


class Probe:
    def __init__(self, model: llamakit.Model, n_prompt: int, n_gen: int) -> None:
        self.model, self.n_prompt, self.n_gen = model, n_prompt, n_gen
        self.ctx = model.new_context(n_ctx=n_prompt + n_gen + 8, n_batch=max(n_prompt, 512),
                                     n_ubatch=min(n_prompt, 512))
        self.h = self.ctx._handle
        rng = random.Random(0)
        specials = set(model.special_tokens)
        pool = [t for t in range(model.n_vocab) if t not in specials]
        self.prompt = [rng.choice(pool) for _ in range(n_prompt)]
        self.sampler = SamplerHandle.new(model._handle)
        bans = [t for t in specials if model.is_eog(t)]
        if bans:
            self.sampler.add("logit_bias", {"logit_bias": {t: float("-inf") for t in bans}})
        self.sampler.add("greedy", {})

    def close(self) -> None:
        self.sampler.close()
        self.ctx.close()

    def _perf(self) -> float:
        p = self.h.perf()
        return float(p["t_eval_ms"] + p["t_p_eval_ms"])

    def pp(self, split: bool = False) -> dict[str, float]:
        h = self.h
        h.clear_memory()
        h.reset_perf()
        started = time.perf_counter()
        if split:
            body = self.prompt[:-1]
            array = h.ffi.new("llama_token[]", body)
            batch = h.lib.llama_batch_get_one(array, len(body))
            flags = h.ffi.new("int8_t[]", len(body))  # zeros: no outputs
            batch.logits = flags
            h.evaluate_batch(batch, len(body))
            h.decode(self.prompt[-1:])
        else:
            h.decode(self.prompt)
        token = self.sampler.sample(h)
        wall = (time.perf_counter() - started) * 1e3
        del token
        return {"wall_ms": wall, "llama_ms": self._perf()}

    def tg(self) -> dict[str, float]:
        h = self.h
        h.clear_memory()
        h.reset_perf()
        token = self.prompt[0]
        started = time.perf_counter()
        for _ in range(self.n_gen):
            h.decode([token])
            token = self.sampler.sample(h)
        wall = (time.perf_counter() - started) * 1e3
        return {"wall_ms": wall, "llama_ms": self._perf()}


def _median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}


def _repeat(reps: int, step: Callable[[], dict[str, float]]) -> dict[str, float]:
    step()
    return _median([step() for _ in range(reps)])


def _alternate(reps: int, probe: Probe, split: bool) -> dict[str, dict[str, float]]:
    pp_rows, tg_rows = [], []
    probe.pp(split)
    probe.tg()
    for _ in range(reps):
        pp_rows.append(probe.pp(split))
        tg_rows.append(probe.tg())
    return {"pp": _median(pp_rows), "tg": _median(tg_rows)}


def measure(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with llamakit.load_model(path, backend=args.backend, n_gpu_layers=-1) as model:
        probe = Probe(model, args.n_prompt, args.n_gen)
        try:
            out["pp alone"] = _repeat(args.reps, probe.pp)
            out["tg alone"] = _repeat(args.reps, probe.tg)
            out["pp/tg alternating"] = _alternate(args.reps, probe, False)
            out["split pp/tg"] = _alternate(args.reps, probe, True)
            out["split pp alone"] = _repeat(args.reps, lambda: probe.pp(True))
            if attach_backend(probe.h, 0, probe.sampler):
                try:
                    out["tg, backend sampling kept"] = _repeat(args.reps, probe.tg)
                    out["pp/tg alternating, backend sampling kept"] = _alternate(
                        args.reps, probe, False)
                finally:
                    detach_backend(probe.h, 0)
            out["tg alone again"] = _repeat(args.reps, probe.tg)
        finally:
            probe.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--backend", default="cuda")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--n-prompt", type=int, default=512)
    parser.add_argument("--n-gen", type=int, default=128)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-graphs-too", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"cuda graphs": {}}
    for path in args.models:
        results["cuda graphs"][path.name] = got = measure(path, args)
        print(path.name, json.dumps(got, indent=1), flush=True)
    if args.no_graphs_too:
        child = [sys.executable, __file__, *map(str, args.models), "--backend", args.backend,
                 "--reps", str(args.reps), "--n-prompt", str(args.n_prompt),
                 "--n-gen", str(args.n_gen), "--json", str(args.json or "nographs.json")
                 + ".nographs"]
        subprocess.run(child, check=True, env={**os.environ, "GGML_CUDA_DISABLE_GRAPHS": "1"})
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
