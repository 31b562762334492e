#!/usr/bin/env python3
"""llamakit against llama-bench on one GPU, interleaved, with the gap split into its parts.

    python3 benchmarks/gpu/parity.py M1.gguf [M2.gguf ...] --llama-bench BIN \\
        [--backend cuda] [--rounds 5] [--reps 3] [--json OUT]

Per model, after one warm-up of everything, ``--rounds`` rounds; each round runs
llama-bench (``-p N -n N -r REPS -ngl 99``, a fresh process: it loads the model and warms
up itself) and then, in llamakit's one loaded model and context, ``--reps`` repetitions of:

- ``generate``: what ``backends.py`` measures (the issue-25 numbers): ``Context.generate``
  of a prompt of ``--n-prompt`` random tokens with one new token (pp), then of one token
  with ``--n-gen`` new greedy tokens (tg), pp and tg alternating in one context; tg bans
  every end-of-generation token with ``logit_bias`` (``--no-bias``: not; a first token
  whose greedy run is long enough is searched instead, as ``backends.py`` does);
  ``generate tg (backend sampling)`` is the same tg with ``backend_sampling=True`` (greedy
  and the ban run inside llama.cpp's graph), in its own loop after the others;
- ``engine pp``: ``ContextHandle.decode`` of the same prompt and a read of its logits
  (llama-bench's pp: one decode, one synchronisation), repeated back to back after one
  unmeasured repetition, so no tg graph runs in between;
- ``engine tg``: ``--n-gen`` single-token decodes of random tokens without reading logits
  (llama-bench's tg loop, from Python), and the same loop with a greedy ``SamplerHandle``
  sampling after each decode (generation's own loop without tokenizer or results).

For each llamakit row, llama.cpp's perf counters (``t_p_eval_ms``/``t_eval_ms``: from the
start of a decode to the synchronisation that reads its result, so the graph build and the
GPU's work) are reported beside the wall clock: ``host ms`` is what the wall clock adds
per call (pp) or per token (tg) outside llama.cpp's decode. Medians over all rounds.
llama-bench's numbers are the medians of its per-repetition samples.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import llamakit
from llamakit._native.sampler import SamplerHandle


def _tokens(model: llamakit.Model, n: int, rng: random.Random) -> list[int]:
    specials = set(model.special_tokens)
    pool = [t for t in range(model.n_vocab) if t not in specials]
    return [rng.choice(pool) for _ in range(n)]


def _eog_bias(model: llamakit.Model) -> dict[str, float]:
    """Every end-of-generation token banned: random weights must not stop a run early."""
    return {str(t): float("-inf") for t in model.special_tokens if model.is_eog(t)}


class Side:
    """llamakit's measurements on one loaded model and context."""

    def __init__(self, model: llamakit.Model, *, n_prompt: int, n_gen: int,
                 bias: bool = True) -> None:
        self.model, self.n_prompt, self.n_gen = model, n_prompt, n_gen
        self.ctx = model.new_context(n_ctx=n_prompt + n_gen, n_batch=max(n_prompt, 512),
                                     n_ubatch=min(n_prompt, 512))
        self.handle = self.ctx._handle
        rng = random.Random(0)
        self.prompt = _tokens(model, n_prompt, rng)
        self.randoms = _tokens(model, n_gen, rng)
        self.first = self.prompt[0]
        self.bias = _eog_bias(model) if bias else {}
        if not bias:
            self.first = self._first_token(rng)

    def _first_token(self, rng: random.Random) -> int:
        """Without the bias (a logit_bias stage turns off the shim's greedy fast path): a
        first token whose greedy continuation runs n_gen tokens, as backends.py picks it."""
        for token in _tokens(self.model, 16, rng):
            self.ctx.reset()
            result = self.ctx.generate([token], max_new_tokens=self.n_gen, temperature=0)
            if len(result.tokens) == self.n_gen:
                return token
        raise RuntimeError(f"no first token of 16 runs {self.n_gen} tokens without an EOG")

    def close(self) -> None:
        self.ctx.close()

    def generate_pp(self) -> dict[str, float]:
        self.ctx.reset()
        started = time.perf_counter()
        result = self.ctx.generate(self.prompt, max_new_tokens=1, temperature=0)
        wall = time.perf_counter() - started
        return {"wall_ms": wall * 1e3, "llama_ms": result.timings.native["t_p_eval_ms"]}

    def generate_tg(self, in_graph: bool = False) -> dict[str, float]:
        self.ctx.reset()
        started = time.perf_counter()
        result = self.ctx.generate([self.first], max_new_tokens=self.n_gen, temperature=0,
                                   logit_bias=self.bias, backend_sampling=in_graph)
        wall = time.perf_counter() - started
        if len(result.tokens) != self.n_gen:
            raise RuntimeError(f"generate gave {len(result.tokens)} tokens, not {self.n_gen}")
        native = result.timings.native
        # The one-token prompt is t_p_eval; the n_gen - 1 decodes after it are t_eval
        # (the last sampled token is never decoded).
        return {"wall_ms": wall * 1e3, "llama_ms": native["t_eval_ms"] + native["t_p_eval_ms"]}

    def engine_pp(self) -> dict[str, float]:
        self.ctx.reset()
        self.handle.reset_perf()
        started = time.perf_counter()
        self.handle.decode(self.prompt)
        self.handle.logits(-1)  # synchronizes, as llama-bench does after the prompt
        wall = time.perf_counter() - started
        return {"wall_ms": wall * 1e3, "llama_ms": self.handle.perf()["t_p_eval_ms"]}

    def engine_tg(self, *, sample: bool) -> dict[str, float]:
        handle = self.handle
        self.ctx.reset()
        sampler = None
        if sample:
            sampler = SamplerHandle.new(self.model._handle)
            sampler.add("greedy", {})
        try:
            token = self.first
            handle.reset_perf()
            started = time.perf_counter()
            if sampler is not None:
                for _ in range(self.n_gen):
                    handle.decode([token])
                    token = sampler.sample(handle)
            else:
                for token in self.randoms:
                    handle.decode([token])
                handle.logits(-1)  # the last decode's synchronisation closes perf's interval
            wall = time.perf_counter() - started
            perf = handle.perf()
        finally:
            if sampler is not None:
                sampler.close()
        return {"wall_ms": wall * 1e3, "llama_ms": perf["t_eval_ms"] + perf["t_p_eval_ms"]}


def run_llama_bench(binary: Path, model: Path, *, n_prompt: int, n_gen: int,
                    reps: int) -> dict[str, Any]:
    command = [str(binary), "-m", str(model), "-p", str(n_prompt), "-n", str(n_gen),
               "-r", str(reps), "-ngl", "99", "-o", "json"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    out: dict[str, Any] = {}
    for test in json.loads(done.stdout):
        kind = "pp" if test["n_gen"] == 0 else "tg"
        out[kind] = [float(s) for s in test["samples_ts"]]
        out["info"] = {k: test.get(k) for k in ("build_commit", "backends", "gpu_info",
                                                "n_batch", "n_ubatch", "flash_attn",
                                                "model_size", "type_k", "type_v")}
    return out


_ROWS = ("generate pp", "engine pp (repeated)", "generate tg", "generate tg (backend sampling)",
         "engine tg greedy", "engine tg decode only")


def measure_model(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {row: [] for row in _ROWS}
    bench: dict[str, list[float]] = {"pp": [], "tg": []}
    info: dict[str, Any] = {}
    profile = ""
    with llamakit.load_model(path, backend=args.backend, n_gpu_layers=-1) as model:
        side = Side(model, n_prompt=args.n_prompt, n_gen=args.n_gen, bias=args.bias)
        try:
            steps = {"generate pp": side.generate_pp, "generate tg": side.generate_tg,
                     "generate tg (backend sampling)": lambda: side.generate_tg(True),
                     "engine pp (repeated)": side.engine_pp,
                     "engine tg greedy": lambda: side.engine_tg(sample=True),
                     "engine tg decode only": lambda: side.engine_tg(sample=False)}
            for step in steps.values():  # warm-up: every graph shape once
                step()
            if args.llama_bench is not None:
                # llama-bench's own warm-up run is inside each invocation, but a driver
                # that compiles shaders on first use (Vulkan; its cache on disk) paid that
                # inside the first invocation's timed runs: 1B pp512 came out 3.5x low on
                # the H200. One unrecorded invocation first.
                run_llama_bench(args.llama_bench, path, n_prompt=args.n_prompt,
                                n_gen=args.n_gen, reps=1)
            for round_ in range(args.rounds):
                started = time.perf_counter()
                if args.llama_bench is not None:
                    got = run_llama_bench(args.llama_bench, path, n_prompt=args.n_prompt,
                                          n_gen=args.n_gen, reps=args.reps)
                    bench["pp"] += got["pp"]
                    bench["tg"] += got["tg"]
                    info = got["info"]
                for _ in range(args.reps):  # alternating, as backends.py measures
                    samples["generate pp"].append(side.generate_pp())
                    samples["generate tg"].append(side.generate_tg())
                side.engine_pp()  # unmeasured: the first pp after a tg rebuilds its graph
                for _ in range(args.reps):
                    samples["engine pp (repeated)"].append(side.engine_pp())
                for _ in range(args.reps):
                    samples["engine tg greedy"].append(side.engine_tg(sample=True))
                for _ in range(args.reps):
                    samples["engine tg decode only"].append(side.engine_tg(sample=False))
                # backend_sampling: each call attaches its chain (llama.cpp re-reserves its
                # graphs at the call's first decode) and detaches it at the end
                for _ in range(args.reps):
                    samples["generate tg (backend sampling)"].append(side.generate_tg(True))
                side.generate_pp()  # unmeasured: takes the re-reserve of the last detach
                print(f"  {path.name} round {round_ + 1}/{args.rounds}: "
                      f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
            if args.profile:  # one more pp and tg under cProfile, after the rounds
                profiler = cProfile.Profile()
                profiler.enable()
                side.generate_pp()
                side.generate_tg()
                profiler.disable()
                text = io.StringIO()
                pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
                profile = text.getvalue()
                print(profile, file=sys.stderr)
        finally:
            side.close()
    rows = []
    for name in _ROWS:
        n = args.n_prompt if name.endswith("pp") or "pp (" in name else args.n_gen
        walls = [s["wall_ms"] for s in samples[name]]
        llamas = [s["llama_ms"] for s in samples[name]]
        per = 1 if "pp" in name else n  # host ms per call (pp) or per token (tg)
        rows.append({"name": name, "n": n, "tokens_per_s": n / statistics.median(walls) * 1e3,
                     "wall_ms": statistics.median(walls),
                     "llama_ms": statistics.median(llamas),
                     "llama_tokens_per_s": n / statistics.median(llamas) * 1e3,
                     "host_ms": (statistics.median(walls) - statistics.median(llamas)) / per,
                     "samples": samples[name]})
    report: dict[str, Any] = {"model": str(path), "size_bytes": path.stat().st_size,
                              "bias": args.bias, "rows": rows, "profile": profile,
                              "llama_bench": {**bench, "info": info}}
    if bench["pp"]:
        ref = {"pp": statistics.median(bench["pp"]), "tg": statistics.median(bench["tg"])}
        report["llama_bench"]["median"] = ref
        for row in rows:
            row["ratio"] = row["tokens_per_s"] / ref["pp" if "pp" in row["name"] else "tg"]
    return report


def markdown(reports: list[dict[str, Any]], n_prompt: int, n_gen: int) -> str:
    lines = ["| model | measure | tok/s | ratio to llama-bench | wall ms | llama.cpp ms "
             "(its tok/s) | host ms per call (pp) / token (tg) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for report in reports:
        name = Path(report["model"]).stem
        ref = report["llama_bench"].get("median")
        if ref:
            lines.append(f"| {name} | llama-bench pp{n_prompt} | {ref['pp']:,.0f} | 1 | "
                         f"{n_prompt / ref['pp'] * 1e3:.3f} | | |")
            lines.append(f"| {name} | llama-bench tg{n_gen} | {ref['tg']:,.1f} | 1 | "
                         f"{n_gen / ref['tg'] * 1e3:.2f} | | |")
        for row in report["rows"]:
            ratio = f"{row['ratio']:.3f}" if "ratio" in row else ""
            lines.append(f"| {name} | {row['name']} | {row['tokens_per_s']:,.1f} | {ratio} | "
                         f"{row['wall_ms']:.3f} | {row['llama_ms']:.3f} "
                         f"({row['llama_tokens_per_s']:,.0f}) | {row['host_ms']:.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--backend", default="cuda")
    parser.add_argument("--llama-bench", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--n-prompt", type=int, default=512)
    parser.add_argument("--n-gen", type=int, default=128)
    parser.add_argument("--no-bias", dest="bias", action="store_false",
                        help="generate tg without banning end-of-generation tokens (a first "
                        "token that runs n_gen tokens is searched instead)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile one more generate pp and tg per model")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    reports = []
    for path in args.models:
        reports.append(measure_model(path, args))
        print(markdown(reports[-1:], args.n_prompt, args.n_gen), flush=True)
        if args.json:  # after each model: a later one may not finish
            args.json.write_text(json.dumps({"n_prompt": args.n_prompt, "n_gen": args.n_gen,
                                             "rounds": args.rounds, "reps": args.reps,
                                             "reports": reports}, indent=1))
    print(markdown(reports, args.n_prompt, args.n_gen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
