"""Sampling costs: JSON-schema-constrained generation against unconstrained, and the
per-token cost of a Python sampler stage.

    python benchmarks/sampling.py [--shapes small,1b] [--threads 8] [--runs 5]
                                  [--tokens 128] [--samples 200] [--rounds 30] [--json OUT]

Part 1 generates with llama.cpp's default chain (top_k 40, top_p 0.95, min_p 0.05,
temperature 0.8, dist) from the same prompt and seeds, once unconstrained and once under a
JSON schema (llama.cpp's converter, grammar stage first). Reported per generated token:
the whole step (decode + sampling, ``Timings.generated_ms``) and its sampling part (the
step minus llama.cpp's mean single-token decode time, ``t_eval_ms / n_eval``). The
schema's strings are long enough that outputs run about as long as unconstrained ones.

Part 2 times ``SamplerChain.sample`` alone (no decode in between: the same logits each time,
every sample accepted) for the same native chain without and with a Python stage:
a no-op one after ``top_k`` (40 candidates), one that edits logits with numpy there, and
a no-op one before ``top_k`` (the whole vocabulary). Batches of the native chain and of a
variant alternate; the median of the paired differences is what the Python stage costs
per token.

Part 3 times one grammar pass over the whole vocabulary (``SamplerChain.apply`` with the
schema's grammar, which always applies it): what a constrained sample costs when the
chain's first choice breaks the grammar and every candidate must be checked.

``--bias`` instead times one ``sample`` of each chain that generation builds, with and
without a ``logit_bias`` stage that bans the end-of-generation tokens (as the GPU
benchmarks do), and for the banned chains also on the shim's general path
(``fast_paths = False``: llama.cpp's chain over all n_vocab candidates, which is what every
biased chain took before the shim's fast paths learnt to fold biases in); then one generated
token's host calls, ``sample`` + ``is_eog`` + ``piece`` against one ``sample_piece``. Tiny
synthetic models with the llama-spm (32,000 tokens) and llama-bpe (128,256) vocabularies;
batches of ``--samples`` calls, all variants interleaved ``--rounds`` times, medians and
minima of the batches.

Models are the synthetic shapes of ``benchlib/models.py`` (llama-bpe vocabulary, 128 256 tokens),
in F16. Prints one line per measurement and markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: benchlib

from benchlib.models import model_path  # noqa: E402

import llamakit  # noqa: E402

PROMPT = "Write the record of a person as JSON:"
SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "required": ["name", "city", "bio", "tags", "age", "active"],
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "city": {"type": "string", "maxLength": 24},
        "bio": {"type": "string", "maxLength": 160},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12},
                 "maxItems": 6},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "active": {"type": "boolean"},
    },
}


class NoOp:
    """A Python stage that does nothing: the bare cost of the bridge."""

    def apply(self, candidates: llamakit.Candidates) -> None:
        pass


class Edit:
    """A Python stage that does typical work: scale logits and ban one token."""

    def __init__(self, token: int) -> None:
        self.token = token

    def apply(self, candidates: llamakit.Candidates) -> None:
        logits = candidates.logits
        logits *= 1.1
        logits[candidates.ids == self.token] = -np.inf

    def accept(self, token: int) -> None:
        pass


def _generation(ctx: llamakit.Context, runs: int, tokens: int,
                constrained: bool) -> dict[str, Any]:
    steps, sampling, counts = [], [], []
    for seed in range(runs):
        kwargs: dict[str, Any] = {"json_schema": SCHEMA} if constrained else {}
        result = ctx.generate(PROMPT, max_new_tokens=tokens, seed=seed, **kwargs)
        if constrained and result.finish_reason == "eog":
            json.loads(result.text)  # a benchmark of wrong output would be worthless
        t = result.timings
        n = max(1, t.generated_tokens)
        steps.append(t.generated_ms / n)
        # Single-token decodes are llama.cpp's "eval"; their mean is the decode part of a step.
        decode_ms = t.native["t_eval_ms"] / max(1, t.native["n_eval"])
        sampling.append(t.generated_ms / n - decode_ms)
        counts.append(t.generated_tokens)
    return {"ms_per_token": statistics.median(steps),
            "sampling_ms_per_token": statistics.median(sampling),
            "tokens_median": statistics.median(counts)}


def _sample_loop(ctx: llamakit.Context, chain: llamakit.SamplerChain, samples: int) -> float:
    """Microseconds per ``chain.sample`` over the context's current logits."""
    started = time.perf_counter()
    for _ in range(samples):
        chain.sample(ctx)
    return (time.perf_counter() - started) / samples * 1e6


def _python_stage(ctx: llamakit.Context, samples: int, rounds: int) -> dict[str, float]:
    """Median microseconds per sample of the native chain, and for each Python variant the
    median of paired differences (native batch, then variant batch, ``rounds`` times):
    pairing cancels the drift of a shared machine that batches far apart would see."""
    model = ctx.model
    ctx.generate(PROMPT, max_new_tokens=1, temperature=0)  # leaves logits for the prompt

    def chain(stage: object | None, before_top_k: bool = False) -> llamakit.SamplerChain:
        c = llamakit.SamplerChain(model)
        if stage is not None and before_top_k:
            c.add_custom(stage)  # type: ignore[arg-type]
        c.add_top_k(40)
        if stage is not None and not before_top_k:
            c.add_custom(stage)  # type: ignore[arg-type]
        return c.add_top_p(0.95).add_min_p(0.05).add_temp(0.8).add_dist(seed=1)

    native = chain(None)
    variants = {"+ no-op Python stage": chain(NoOp()),
                "+ numpy Python stage": chain(Edit(13)),
                "+ no-op Python stage before top_k": chain(NoOp(), before_top_k=True)}
    for c in (native, *variants.values()):
        _sample_loop(ctx, c, 50)  # warm-up
    base: list[float] = []
    extra: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, c in variants.items():
            reference = _sample_loop(ctx, native, samples)
            base.append(reference)
            extra[name].append(_sample_loop(ctx, c, samples) - reference)
    for c in (native, *variants.values()):
        c.close()
    return {"native only": statistics.median(base),
            **{name: statistics.median(values) for name, values in extra.items()}}


def _grammar_pass(ctx: llamakit.Context, repeats: int) -> dict[str, float]:
    """Milliseconds of one grammar ``apply`` over the whole vocabulary (the slow path of a
    constrained sample), at the schema's first position, and of the chain without it."""
    model = ctx.model
    logits = np.random.default_rng(0).normal(size=model.n_vocab).astype(np.float32)
    grammar = llamakit.Grammar.from_json_schema(SCHEMA, model=model)
    result = {}
    for name, chain in (("with grammar", llamakit.SamplerChain(model).add_grammar(grammar)),
                        ("without", llamakit.SamplerChain(model))):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            chain.apply(logits)
            times.append((time.perf_counter() - started) * 1000)
        chain.close()
        result[name] = min(times)
    return result


def _bias_part(samples: int, rounds: int) -> dict[str, dict[str, float]]:
    """Microseconds per call of each chain, by vocabulary (see the module docstring)."""
    import tempfile

    from llamakit.testing import write_llama_model

    report: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for vocab in ("llama-spm", "llama-bpe"):
            path = Path(tmp) / f"{vocab}.gguf"
            write_llama_model(path, vocab=vocab)
            with llamakit.load_model(path, backend="cpu") as model, \
                    model.new_context(n_ctx=256, n_threads=1) as ctx:
                report[f"{vocab} ({model.n_vocab} tokens)"] = _bias_times(ctx, samples, rounds)
    return report


def _bias_times(ctx: llamakit.Context, samples: int, rounds: int) -> dict[str, float]:
    model = ctx.model
    mh, ch = model._handle, ctx._handle
    ban = [(t, float("-inf")) for t in range(model.n_vocab) if mh.is_eog(t)]
    ctx._handle.decode(model.tokenize(PROMPT))

    def chain(kind: str, bias: bool, fast: bool = True) -> llamakit.SamplerChain:
        c = llamakit.SamplerChain(model)
        if bias:
            c.add("logit_bias", logit_bias=ban)
        if kind == "greedy":
            c.add_greedy()
        else:
            c.add_top_k(40).add_top_p(0.95).add_min_p(0.05).add_temp(0.8).add_dist(seed=1)
        c._handle.fast_paths = fast
        return c

    chains = {f"{kind}{label}": chain(kind, bias, fast) for kind in ("greedy", "default")
              for label, bias, fast in (("", False, True), (" + ban", True, True),
                                        (" + ban, general path", True, False))}
    # The per-token comparison uses the cheapest chain, where the calls' own cost shows.
    per_token = chains["greedy + ban"]._handle

    def three_calls() -> None:
        token = per_token.sample(ch)
        mh.is_eog(token)
        mh.piece(token, False)

    def one_call() -> None:
        per_token.sample_piece(ch)

    calls: dict[str, Any] = {name: (lambda c=c: c.sample(ctx)) for name, c in chains.items()}
    calls["greedy + ban: sample + is_eog + piece"] = three_calls
    if hasattr(per_token, "sample_piece"):
        calls["greedy + ban: sample_piece"] = one_call
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            for _ in range(samples):
                call()
            times[name].append((time.perf_counter() - started) / samples * 1e6)
    for c in chains.values():
        c.close()
    # Medians and minima: on a loaded machine the minimum is the better estimate of the work.
    return {**{name: statistics.median(values) for name, values in times.items()},
            **{f"{name} (min)": min(values) for name, values in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="small,1b")
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--samples", type=int, default=200, help="samples per timed batch")
    parser.add_argument("--rounds", type=int, default=30, help="paired batches per variant")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--bias", action="store_true",
                        help="only the logit_bias / per-token part (tiny models)")
    args = parser.parse_args()
    if args.bias:
        bias = _bias_part(args.samples, args.rounds)
        print("\n| vocabulary | chain | us per call (median of batches; min) |")
        print("| --- | --- | --- |")
        for vocab, values in bias.items():
            for name, us in values.items():
                print(f"| {vocab} | {name} | {us:.1f} |")
        if args.json is not None:
            args.json.write_text(json.dumps(bias, indent=2))
        return
    report: dict[str, Any] = {"machine": f"{platform.machine()} {os.cpu_count()} cores, "
                                         f"{platform.processor() or platform.platform()}",
                              "threads": args.threads, "shapes": {}}
    for shape in args.shapes.split(","):
        path = model_path(shape, "F16")
        with llamakit.load_model(path, backend="cpu") as model, \
                model.new_context(n_ctx=1024, n_threads=args.threads) as ctx:
            ctx.generate(PROMPT, max_new_tokens=8)  # warm-up
            free = _generation(ctx, args.runs, args.tokens, constrained=False)
            schema = _generation(ctx, args.runs, args.tokens, constrained=True)
            python = _python_stage(ctx, args.samples, rounds=args.rounds)
            grammar_pass = _grammar_pass(ctx, repeats=20)
            n_vocab = model.n_vocab
        report["shapes"][shape] = {"n_vocab": n_vocab, "unconstrained": free,
                                   "json_schema": schema, "sample_us": python,
                                   "vocabulary_pass_ms": grammar_pass}
        print(f"{shape}: unconstrained {free}", flush=True)
        print(f"{shape}: json_schema   {schema}", flush=True)
        print(f"{shape}: sample() us   {python}", flush=True)
        print(f"{shape}: vocabulary pass ms {grammar_pass}", flush=True)
    print(f"\n{report['machine']}, {args.threads} threads\n")
    print("| model | mode | ms/token (step) | of which sampling | tokens (median) |")
    print("| --- | --- | --- | --- | --- |")
    for shape, r in report["shapes"].items():
        for mode in ("unconstrained", "json_schema"):
            m = r[mode]
            print(f"| {shape} | {mode} | {m['ms_per_token']:.2f} | "
                  f"{m['sampling_ms_per_token']:.3f} | {m['tokens_median']:.0f} |")
    print("\n| model | apply() over the whole vocabulary | with the JSON grammar | without |")
    print("| --- | --- | --- | --- |")
    for shape, r in report["shapes"].items():
        g = r["vocabulary_pass_ms"]
        print(f"| {shape} | {r['n_vocab']} tokens | {g['with grammar']:.2f} ms | "
              f"{g['without']:.2f} ms |")
    print("\n| model | chain | us per sample() | Python stage cost |")
    print("| --- | --- | --- | --- |")
    for shape, r in report["shapes"].items():
        base = r["sample_us"]["native only"]
        for name, us in r["sample_us"].items():
            if name == "native only":
                print(f"| {shape} | {name} | {us:.1f} | |")
            else:
                print(f"| {shape} | {name} | {base + us:.1f} | {us:+.1f} us |")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
