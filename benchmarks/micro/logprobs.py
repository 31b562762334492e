"""What ``logprobs=`` costs per generated token, and that generation without it is unchanged.

    python benchmarks/micro/logprobs.py [--shape small] [--ftype f16] [--threads 1]
                                        [--tokens 64] [--rounds 7] [--calls 2000]
                                        [--modes none,0,5,20,post5] [--batch N]
                                        [--json OUT]

Part 1 (``--calls``): the native read alone. After one decode, ``LogprobReader.read`` is
called ``--calls`` times on the same logits row (no decode in between): the log-softmax
over the whole vocabulary and the top-k in C, plus the Python around it. Reported in
microseconds per call, the median of ``--rounds`` batches.

Part 2 (``--modes``): greedy generation of ``--tokens`` tokens from the same prompt, the
modes interleaved round by round in one process (``none``: no logprobs; ``0``/``5``/``20``:
that many alternatives; ``post5``: 5 with ``post_sampling_probs``). Reported: the minimum
(and the median) over rounds of milliseconds per generated token
(``Timings.generated_ms``) and the minimum's difference from the first mode; and the
calling thread's CPU time per generated token (``time.thread_time``), which other
processes on a busy machine disturb far less than wall time. With ``--threads 1`` llama.cpp
computes on the calling thread, so that figure covers decode, sampling and logprobs. With ``--modes none`` the script runs on a llamakit that
predates ``logprobs`` too (point ``PYTHONPATH`` at its checkout) for a before/after
comparison of plain generation; run the two alternately, several times, on a busy machine.

With ``--batch N`` (N > 1) part 2 runs ``Context.generate_batch`` on N copies of the prompt
(N sequences decoded together, the stepping code the ``Engine`` uses) and reports time per
generated token over the whole call, prompt included (the same in every mode); part 1 is
skipped. ``--modes none`` runs on a llamakit whose ``generate_batch`` predates
``logprobs`` too.

Models are the synthetic shapes of ``benchmarks/benchlib/models.py`` (llama-bpe vocabulary,
128 256 tokens: the log-softmax reads 500 KB of logits per token).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: benchlib

from benchlib.models import model_path  # noqa: E402

import llamakit  # noqa: E402

PROMPT = "The history of the city begins"


def _mode_kwargs(mode: str) -> dict[str, Any]:
    if mode == "none":
        return {}
    if mode.startswith("post"):
        return {"logprobs": int(mode[4:]), "post_sampling_probs": True}
    return {"logprobs": int(mode)}


def read_cost(ctx: llamakit.Context, calls: int, rounds: int, top_k: int) -> float:
    """Microseconds of CPU time per LogprobReader.read on one logits row (the minimum
    over rounds)."""
    from llamakit._native.logits import LogprobReader

    ctx.reset()
    ctx.eval(ctx.tokenize(PROMPT))
    reader = LogprobReader(ctx._handle, top_k, post_sampling=False)
    results = []
    for _ in range(rounds):
        start = time.thread_time()  # CPU time: robust to other processes on the machine
        for _ in range(calls):
            reader.read(0)
        results.append((time.thread_time() - start) / calls * 1e6)
    return min(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="small")
    parser.add_argument("--ftype", default="f16")
    parser.add_argument("--model", default=None,
                        help="a GGUF file to use instead of the synthetic --shape")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--modes", default="none,0,5,20,post5")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    path = args.model or model_path(args.shape, args.ftype, verbose=False)
    report: dict[str, Any] = {"shape": args.shape, "ftype": args.ftype,
                              "threads": args.threads, "tokens": args.tokens,
                              "batch": args.batch, "llamakit": llamakit.__file__}
    with llamakit.load_model(path, backend="cpu") as model, \
            model.new_context(n_ctx=512 * args.batch, n_threads=args.threads,
                              n_seq_max=args.batch) as ctx:
        report["n_vocab"] = model.n_vocab
        if modes != ["none"] and args.calls > 0 and args.batch == 1:
            for top_k in (0, 5, 20):
                cost = read_cost(ctx, args.calls, args.rounds, top_k)
                report[f"read_us_top{top_k}"] = cost
                print(f"read, top {top_k:2}: {cost:8.1f} us per call", flush=True)
        per_mode: dict[str, list[float]] = {m: [] for m in modes}
        cpu_mode: dict[str, list[float]] = {m: [] for m in modes}
        ctx.generate(PROMPT, max_new_tokens=8, temperature=0)  # warm-up
        for _ in range(args.rounds):
            for mode in modes:
                # The prompt stays cached from the previous call (only its last token is
                # evaluated again), so the thread's CPU time is almost all generation.
                cpu = time.thread_time()
                if args.batch > 1:
                    wall = time.perf_counter()
                    results = ctx.generate_batch([PROMPT] * args.batch,
                                                 max_new_tokens=args.tokens, temperature=0,
                                                 stop=[], **_mode_kwargs(mode))
                    wall = time.perf_counter() - wall
                    cpu = time.thread_time() - cpu
                    n = max(sum(r.timings.generated_tokens for r in results), 1)
                    per_mode[mode].append(wall * 1000 / n)
                    cpu_mode[mode].append(cpu * 1000 / n)
                    continue
                result = ctx.generate(PROMPT, max_new_tokens=args.tokens, temperature=0,
                                      stop=[], **_mode_kwargs(mode))
                cpu = time.thread_time() - cpu
                t = result.timings
                per_mode[mode].append(t.generated_ms / max(t.generated_tokens, 1))
                cpu_mode[mode].append(cpu * 1000 / max(t.generated_tokens, 1))
        # The minimum over rounds is the figure least disturbed by other processes on a
        # shared machine; the median is printed beside it.
        base = min(per_mode[modes[0]])
        for mode in modes:
            value, median = min(per_mode[mode]), statistics.median(per_mode[mode])
            report[f"tg_ms_per_token_{mode}"] = value
            report[f"tg_ms_per_token_median_{mode}"] = median
            report[f"tg_samples_{mode}"] = per_mode[mode]
            print(f"generate, logprobs={mode:6}: {value:7.3f} ms/token min "
                  f"({value - base:+.3f} vs {modes[0]}; {1000 / value:7.1f} t/s), "
                  f"median {median:7.3f}", flush=True)
        cpu_base = min(cpu_mode[modes[0]])
        for mode in modes:
            value = min(cpu_mode[mode])
            report[f"cpu_ms_per_token_{mode}"] = value
            report[f"cpu_samples_{mode}"] = cpu_mode[mode]
            print(f"calling thread's CPU time, logprobs={mode:6}: {value:7.3f} ms/token min "
                  f"({value - cpu_base:+.3f} vs {modes[0]})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
