#!/usr/bin/env python3
"""llamakit against llama.cpp's llama-bench and llama-cpp-python, side by side, in one run.

    python benchmarks/compare/harness.py             # the full run (1B shape, Q4_0 and Q8_0)
    python benchmarks/compare/harness.py --quick     # a small model, about two minutes
    python benchmarks/compare/harness.py --out DIR   # DIR/results.json and DIR/results.md

What it does (everything cached under ``~/.cache/llamakit/bench/`` after the first run):

1. builds ``llama-bench`` from the tree and flags of llamakit's CPU variant
   (``benchlib/llama_bench.py``), llama-cpp-python 0.3.36 from the same tree and ggml flags in a
   virtual environment of its own (``_llama_cpp_python.py``), and the synthetic models
   (``benchlib/models.py``: the 1B shape, n_embd 2048, 16 layers, 32/8 heads, ffn 8192, llama-bpe
   vocabulary, F16 quantized to Q4_0 and Q8_0);
2. per model: loads it once in llamakit (this process) and once in llama-cpp-python (a
   worker process), runs one warm-up round of every measurement (llama-bench warms up in
   each call instead: it runs two repetitions and the first is dropped), then ``--reps``
   rounds in which the measurements alternate (the order rotates each round): pp (one
   prompt of ``--n-prompt`` tokens) and tg (``--n-gen`` tokens) through llamakit's engine
   loop and llama-bench; end-to-end generate and stream, greedy and top-p, through
   llamakit and llama-cpp-python; llama-cpp-python's ``Llama.eval`` of the prompt; then
   the per-token cost of everything but the model, with llama.cpp's decode stubbed out;
3. load: load time cold and warm and peak RSS (llamakit, llama-cpp-python and a tiny C
   program on llama.cpp's API, a fresh process each run), embeddings throughput;
4. writes all samples as JSON and the tables (medians, ratios) as markdown.

Every side uses the same threads (``--threads``, default 2), n_batch 2048 / n_ubatch 512,
flash attention as llama.cpp's default resolves it on the CPU (on), mmap. Random-weight
models may sample an end-of-generation token: neither llama-cpp-python nor llamakit can
ignore it, so the harness picks the first candidate prompt for which every end-to-end
variant generates exactly ``--n-gen`` tokens in the warm-up round (greedy and seeded top-p
are deterministic), and checks the count of every measured run.

Set ``LLAMAKIT_LLAMA_CPP_DIR`` (or ``--llama-cpp-dir``) to benchmark another llama.cpp
tree: llamakit's variant, llama-bench and llama-cpp-python are then all built from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# This folder's modules (_llamakit_side, _load, _report...) and benchmarks/'s benchlib.
sys.path[:0] = [str(HERE), str(HERE.parent)]

LK, LCP = "llamakit", "llama-cpp-python"
PROMPTS = [
    "The quick brown fox jumps over the lazy dog",
    "Once upon a time, in a land far away,",
    "def fibonacci(n):",
    "The capital of France is",
    "In 1969, the first humans landed on the Moon.",
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def cpu_pressure() -> float | None:
    """Share of the last 10 s in which some runnable task waited for a CPU (Linux PSI):
    unlike the load average it stays near 0 while only the benchmark itself runs."""
    try:
        with open("/proc/pressure/cpu", encoding="ascii") as handle:
            first = handle.readline().split()
        return float(first[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def wait_quiet(args: argparse.Namespace) -> float | None:
    """Wait (at most ``--max-wait`` s) until other work leaves the CPUs alone: with 2
    threads, a third runnable task stalls every OpenMP barrier for a scheduler slice."""
    deadline = time.monotonic() + args.max_wait
    pressure = cpu_pressure()
    announced = False
    while pressure is not None and pressure > args.quiet_psi and time.monotonic() < deadline:
        if not announced:
            log(f"  waiting for a quiet CPU (pressure {pressure:.0f}% > {args.quiet_psi}%)")
            announced = True
        time.sleep(5)
        pressure = cpu_pressure()
    return pressure


class LcpWorker:
    """llama-cpp-python in its own process (its own venv), one JSON request at a time."""

    def __init__(self, python: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.process = subprocess.Popen([str(python), str(HERE / "_lcp_worker.py")],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)

    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(payload) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the llama-cpp-python worker died ({self.process.wait()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"llama-cpp-python worker: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.process.stdin.close()
            self.process.wait(timeout=60)


def _machine() -> dict[str, Any]:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout
    return {"cpu": model, "cpus": os.cpu_count(), "memory_gib": round(mem / 2**30, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "compiler": cc.splitlines()[0] if cc else "?"}


# -- the measurements ------------------------------------------------------------------
Measure = Callable[[], dict[str, Any]]


def _variants(lk: Any, lcp: LcpWorker, bench: Path, model: Path, prompt_box: list[str],
              pp_tokens: list[int], args: argparse.Namespace, full: bool
              ) -> dict[str, Measure]:
    """Every measurement of one model, by name; each returns at least ``tps``."""
    from _llamakit_side import SAMPLING
    from benchlib.llama_bench import run_llama_bench

    n_gen = args.n_gen

    def llama_bench() -> dict[str, Any]:
        # Two repetitions per call, the first discarded: llama-bench's own warm-up is a
        # 1-token decode for tg, and its first measured tg run in a fresh process is
        # about 1.5 % slower than the ones after it (the Python sides are long-lived).
        records = run_llama_bench(bench, model, threads=args.threads, n_prompt=args.n_prompt,
                                  n_gen=n_gen, repetitions=2)
        pp = next(r for r in records if r["n_prompt"] > 0)
        tg = next(r for r in records if r["n_gen"] > 0)
        return {"tps": pp["samples_ts"][-1], "tg_tps": tg["samples_ts"][-1],
                "first_tps": pp["samples_ts"][0], "tg_first_tps": tg["samples_ts"][0],
                "flash_attn": tg.get("flash_attn"), "n_threads": tg.get("n_threads")}

    def engine_pp() -> dict[str, Any]:
        r = lk.engine_pp(pp_tokens)
        return {**r, "tps": r["n"] / r["wall_s"]}

    def engine_tg(sample: bool) -> Measure:
        def run() -> dict[str, Any]:
            r = lk.engine_tg(n_gen, sample=sample)
            outside = r["wall_s"] - r["perf"]["t_eval_ms"] / 1e3
            return {**r, "tps": r["n"] / r["wall_s"], "outside_us": outside / r["n"] * 1e6}
        return run

    def lcp_pp() -> dict[str, Any]:
        r = lcp.request({"cmd": "pp", "tokens": pp_tokens})
        return {**r, "tps": r["n_tokens"] / r["wall_s"]}

    def complete(side: str, mode: str, stream: bool) -> Measure:
        def run() -> dict[str, Any]:
            if side == "llamakit":
                r = lk.complete(prompt_box[0], n_gen, mode, stream=stream)
            else:
                r = lcp.request({"cmd": "complete", "prompt": prompt_box[0],
                                 "max_tokens": n_gen, "stream": stream,
                                 "sampling": SAMPLING[mode]})
            perf = r["perf"]
            outside = r["wall_s"] - (perf["t_eval_ms"] + perf["t_p_eval_ms"]) / 1e3
            return {**r, "tps": r["n_gen"] / r["wall_s"],
                    "outside_us": outside / max(r["n_gen"], 1) * 1e6}
        return run

    variants: dict[str, Measure] = {
        "llama-bench": llama_bench,
        "llamakit engine pp": engine_pp,
        "llama-cpp-python eval pp": lcp_pp,
        "llamakit engine tg": engine_tg(True),
    }
    if args.diagnostics:
        variants["llamakit engine tg (decode only)"] = engine_tg(False)
    modes = [("greedy", False), ("greedy", True), ("top_p", False), ("top_p", True)]
    if not full:
        modes = [("greedy", False)]
    for mode, stream in modes:
        for side in ("llamakit", "llama-cpp-python"):
            name = f"{side} {'stream' if stream else 'generate'} {mode}"
            variants[name] = complete(side, mode, stream)
    return variants


def _check_count(name: str, result: dict[str, Any], n_gen: int) -> bool:
    return "n_gen" not in result or (result["n_gen"] == n_gen and result["finish"] == "length")


def _choose_prompt(variants: dict[str, Measure], prompt_box: list[str], n_gen: int) -> dict[
        str, Any]:
    """Warm-up round; also finds a prompt for which no end-to-end run stops early."""
    warm: dict[str, Any] = {}
    for name, run in variants.items():
        # llama-bench warms up in every call (and the harness drops its first repetition).
        if " generate " in name or " stream " in name or name == "llama-bench":
            continue
        warm[name] = run()
        log(f"  warm-up {name}: {warm[name]['tps']:.1f} tok/s")
    for prompt in PROMPTS:
        prompt_box[0] = prompt
        ok = True
        for name, run in variants.items():
            if " generate " not in name and " stream " not in name:
                continue
            warm[name] = run()
            if not _check_count(name, warm[name], n_gen):
                log(f"  prompt {prompt!r}: {name} stopped after {warm[name]['n_gen']} tokens "
                    f"({warm[name]['finish']}); trying the next prompt")
                ok = False
                break
            log(f"  warm-up {name}: {warm[name]['tps']:.2f} tok/s, {warm[name]['n_gen']} tokens")
        if ok:
            return warm
    raise SystemExit(f"every candidate prompt hit an end-of-generation token within {n_gen} "
                     "tokens; add prompts to PROMPTS")


def measure_overhead(lk: Any, lcp: LcpWorker, prompt: str, n_gen: int,
                     rounds: int) -> dict[str, Any]:
    """Per-token cost of everything but the model: the same calls with llama_decode stubbed
    out (both sides), alternating, ``rounds`` x 4 runs each. Robust to other work on the
    machine in a way the real runs are not: no OpenMP barrier waits on a preempted thread,
    and the best of many short runs."""
    from _llamakit_side import SAMPLING

    # (name, sampling mode, stream); for the engine loop (mode None) the flag says whether
    # it samples.
    calls = [("engine loop, no sampling", None, False), ("engine loop", None, True)] + [
        (f"{'stream' if stream else 'generate'} {mode}", mode, stream)
        for mode in ("greedy", "top_p") for stream in (False, True)]
    per_token: dict[str, dict[str, list[float]]] = {LK: {}, LCP: {}}
    for _ in range(rounds):
        for name, mode, stream in calls:
            if mode is None:
                r = lk.engine_overhead(n_gen, 4, sample=stream)
                per_token[LK].setdefault(name, []).extend(
                    w / n * 1e6 for w, n in zip(r["walls_s"], r["n_gen"], strict=True))
                continue
            a = lk.overhead(prompt, n_gen, mode, stream=stream, runs=4)
            b = lcp.request({"cmd": "overhead", "prompt": prompt, "max_tokens": n_gen,
                             "stream": stream, "sampling": SAMPLING[mode], "runs": 4})
            for side, r in ((LK, a), (LCP, b)):
                per_token[side].setdefault(name, []).extend(
                    w / max(n, 1) * 1e6 for w, n in zip(r["walls_s"], r["n_gen"], strict=True))
    return {side: {name: {"best_us": min(v), "median_us": statistics.median(v),
                          "samples_us": v} for name, v in calls_.items()}
            for side, calls_ in per_token.items()}


def measure_model(ftype: str, model: Path, bench: Path, lcp_python: Path,
                  args: argparse.Namespace, full: bool) -> dict[str, Any]:
    from _llamakit_side import LlamakitSide

    log(f"== {model.name}")
    n_ctx = args.n_prompt + args.n_gen
    lk = LlamakitSide(model, n_ctx=n_ctx, n_batch=2048, n_ubatch=512, threads=args.threads)
    lcp = LcpWorker(lcp_python)
    try:
        lcp.request({"cmd": "load", "model": str(model), "n_ctx": n_ctx, "n_batch": 2048,
                     "n_ubatch": 512, "n_threads": args.threads, "flash_attn": True})
        rng = random.Random(42)
        specials = set(lk.model.special_tokens)
        pool = [t for t in range(lk.model.n_vocab) if t not in specials]
        bos = lk.model.bos_token
        pp_tokens = [bos if bos is not None else pool[0]] + rng.sample(pool, args.n_prompt - 1)
        prompt_box = [PROMPTS[0]]
        variants = _variants(lk, lcp, bench, model, prompt_box, pp_tokens, args, full)
        wait_quiet(args)
        warm = _choose_prompt(variants, prompt_box, args.n_gen)
        samplers = {mode: lk.sampler_cost(mode) for mode in ("greedy", "top_p")}
        overhead = (measure_overhead(lk, lcp, prompt_box[0], args.n_gen, rounds=5)
                    if full else None)
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        loads: list[list[float]] = []
        pressure: list[float | None] = []
        started_psi: list[float | None] = []
        names = list(variants)
        for rep in range(args.reps):
            shift = rep % len(names)
            order = names[shift:] + names[:shift]
            quiet_before = wait_quiet(args)
            before = load_average()
            for name in order:
                result = variants[name]()
                if not _check_count(name, result, args.n_gen):
                    raise SystemExit(f"{name} generated {result['n_gen']} tokens "
                                     f"({result['finish']}) in a measured run")
                samples[name].append(result)
            loads.append([*before, *load_average()])
            pressure.append(cpu_pressure())
            started_psi.append(quiet_before)
            log(f"  rep {rep + 1}/{args.reps} (load {before[0]:.2f} -> {load_average()[0]:.2f}, "
                f"cpu pressure {pressure[-1]}%): "
                + ", ".join(f"{n.replace('llama-cpp-python', 'lcp')} {samples[n][-1]['tps']:.1f}"
                            for n in names))
        # llama-bench's two tests come from one call; split them into two rows.
        samples["llama-bench tg"] = [{**s, "tps": s["tg_tps"]} for s in samples["llama-bench"]]
        samples["llama-bench pp"] = samples.pop("llama-bench")
        return {"ftype": ftype, "model": model.name, "size_mb": round(model.stat().st_size / 1e6),
                "prompt": prompt_box[0], "n_prompt_e2e": warm[next(
                    n for n in names if " generate " in n)]["n_prompt"],
                "sampler_us": samplers, "overhead": overhead,
                "load_average": loads, "cpu_pressure": pressure,
                "cpu_pressure_before": started_psi,
                "n_vocab": lk.model.n_vocab,
                "llama_bench_flash_attn": samples["llama-bench pp"][0].get("flash_attn"),
                "samples": samples,
                "median_tps": {n: statistics.median(s["tps"] for s in v)
                               for n, v in samples.items()},
                "median_outside_us": {n: statistics.median(s["outside_us"] for s in v)
                                      for n, v in samples.items() if "outside_us" in v[0]}}
    finally:
        lcp.close()
        lk.close()


def load_and_memory(args: argparse.Namespace, models: dict[str, Path], lcp_python: Path,
          bos: int) -> dict[str, Any]:
    from _llamakit_side import LlamakitSide
    from _load import (
        can_drop_caches,
        compile_load_probe,
        measure_embeddings,
        measure_load,
    )
    from benchlib.models import model_path

    import llamakit
    from llamakit._build.variant import find_variant
    from llamakit._plugins.manager import get_plugin_host

    variant = find_variant(get_plugin_host().backends()["cpu"])
    if variant is None:
        llamakit.load_model(models[next(iter(models))], backend="cpu").close()
        variant = find_variant(get_plugin_host().backends()["cpu"])
    assert variant is not None
    probe = compile_load_probe(variant)
    out: dict[str, Any] = {"load": {}, "drop_caches": can_drop_caches()}
    for ftype, model in models.items():
        log(f"== load and RSS, {model.name}")
        wait_quiet(args)
        entry = {"warm": measure_load(model, probe=probe, lcp_python=lcp_python,
                                      threads=args.threads, reps=args.load_reps, bos=bos,
                                      cold=False, log=log)}
        if can_drop_caches():
            wait_quiet(args)
            entry["cold"] = measure_load(model, probe=probe, lcp_python=lcp_python,
                                         threads=args.threads, reps=args.load_reps, bos=bos,
                                         cold=True, log=log)
        out["load"][ftype] = entry
    log("== embeddings")
    emb_model = model_path("small", "Q8_0")
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "model", "token", "vector", "space", "meaning",
             "search", "query", "index", "document", "retrieval", "embedding", "similarity",
             "cosine", "batch", "thread", "cache"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(12, 60)))
             for _ in range(args.embed_texts)]
    vocab = llamakit.load_model(emb_model, backend="cpu", vocab_only=True)
    lengths = [len(vocab.tokenize(t)) for t in texts]
    vocab.close()
    # Texts share a decode call up to n_batch tokens on both sides: llama-cpp-python's
    # embedding context holds min(n_batch, 256) sequences in a unified KV cache; llamakit's
    # holds n_seq_max sequences of n_ctx / n_seq_max positions each.
    n_seq_max = min(len(texts), 64)
    n_ctx = -(-n_seq_max * (max(lengths) + 1) // 256) * 256
    lk = LlamakitSide(emb_model, n_ctx=n_ctx, n_batch=512, n_ubatch=512, threads=args.threads,
                      embeddings=True, pooling="mean", n_seq_max=n_seq_max)
    lcp = LcpWorker(lcp_python)
    try:
        lcp.request({"cmd": "load", "model": str(emb_model), "n_ctx": 512, "n_batch": 512,
                     "n_ubatch": 512, "n_threads": args.threads, "flash_attn": True,
                     "embedding": True, "pooling_type": 1})
        n_tokens = sum(lengths)
        wait_quiet(args)
        out["embeddings"] = {"model": emb_model.name, **measure_embeddings(
            lk.embed, lcp.request, texts, n_tokens, reps=args.reps, log=log)}
    finally:
        lcp.close()
        lk.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="the small model, Q4_0 only, fewer rounds (about two minutes)")
    parser.add_argument("--shape", default=None, help="1b (default) or small")
    parser.add_argument("--types", default=None, help="default Q4_0,Q8_0 (--quick: Q4_0)")
    parser.add_argument("--full-types", default="Q4_0",
                        help="types that get every end-to-end variant (greedy and top-p, "
                             "generate and stream); the others get greedy generate only")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--load-reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-prompt", type=int, default=512)
    parser.add_argument("--n-gen", type=int, default=128)
    parser.add_argument("--embed-texts", type=int, default=32)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--quiet-psi", type=float, default=20.0,
                        help="before each round, wait until the CPU pressure (PSI some avg10, "
                             "%%) is at most this")
    parser.add_argument("--max-wait", type=float, default=120.0,
                        help="seconds to wait for that at most, per round")
    parser.add_argument("--diagnostics", action="store_true",
                        help="also time llamakit's engine loop without sampling")
    parser.add_argument("--llama-cpp-dir", type=Path, default=None,
                        help="build every side from this llama.cpp tree")
    parser.add_argument("--out", type=Path, default=HERE / "results",
                        help="folder for results.json and results.md")
    args = parser.parse_args()
    if args.quick:
        args.shape = args.shape or "small"
        args.types = args.types or "Q4_0"
        args.load_reps = 1
        args.embed_texts = min(args.embed_texts, 16)
    args.shape = args.shape or "1b"
    args.types = args.types or "Q4_0,Q8_0"
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    if args.llama_cpp_dir is not None:
        os.environ["LLAMAKIT_LLAMA_CPP_DIR"] = str(args.llama_cpp_dir.resolve())

    from _llama_cpp_python import cmake_args, ensure_llama_cpp_python
    from _report import markdown
    from benchlib.llama_bench import build_llama_bench, cpu_variant_flags
    from benchlib.models import model_path

    import llamakit
    from llamakit._build.source import source_identity, source_tree

    started = time.time()
    variant_key, variant_flags = cpu_variant_flags()
    bench = build_llama_bench()
    lcp_python = ensure_llama_cpp_python(variant_key, variant_flags)
    models = {ft: model_path(args.shape, ft) for ft in args.types.split(",")}
    probe = llamakit.load_model(models[next(iter(models))], backend="cpu", vocab_only=True)
    bos = probe.bos_token if probe.bos_token is not None else 0
    probe.close()
    results: dict[str, Any] = {
        "machine": _machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_average_start": load_average(), "command": " ".join(sys.argv),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "llama_cpp": {"tree": str(source_tree().path), "identity": source_identity(),
                      "cpu_variant_flags": variant_flags, "llama_bench": str(bench),
                      "llama_cpp_python_cmake_args": cmake_args(variant_flags)},
        "models": {}}
    full_types = set(args.full_types.split(","))
    for ftype, model in models.items():
        results["models"][ftype] = measure_model(ftype, model, bench, lcp_python, args,
                                                 full=ftype in full_types)
    if not args.skip_load:
        results["load"] = load_and_memory(args, models, lcp_python, bos)
    results["load_average_end"] = load_average()
    results["wall_s"] = round(time.time() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    text = markdown(results)
    (args.out / "results.md").write_text(text)
    print(text)
    log(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'} "
        f"({results['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
