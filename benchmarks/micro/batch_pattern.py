"""The decode pattern of ``generate_batch`` against llama-batched-bench's, counted on the CPU.

    python benchmarks/micro/batch_pattern.py [--npl 64] [--n-prompt 128] [--n-gen 128]
                                             [--ahead] [--rounds 3] [--model GGUF]
                                             [--json OUT]

Three arms on one context of llama-batched-bench's shape (``n_seq_max`` = ``--npl``,
``n_ctx`` = npl x (prompt + new tokens), ``n_batch`` 2048, ``n_ubatch`` 512, a KV stream per
sequence), interleaved ``--rounds`` times:

- ``lockstep``: ``Context.generate_batch`` (greedy, end-of-generation tokens banned with
  ``logit_bias``, so every sequence runs the full length): prompts that take more than one
  decode are all fed before any generated token (``BatchStepper.lockstep``);
- ``mixed``: the same with ``lockstep`` off (what ``stream_batch`` and the engine do):
  generated tokens of the sequences whose prompts are in join the next prompt decode;
- ``raw``: llama-batched-bench's loop through the same ``BatchHandle``: every prompt in
  ``n_batch`` decodes, then ``--n-gen`` decodes of one token per sequence, each followed by
  ``llama_synchronize`` (its tokens are not sampled).

Counted per arm: ``llama_decode`` calls, ubatches (llama.cpp's ``split_equal`` with
sequential sequence ids, as a KV stream per sequence splits a batch, modelled here from
each batch's sequence ids), graphs llama.cpp reused (``perf()["n_reused"]``; the rest of
the ubatches built a graph), output rows, the ubatch sizes; timed: llama.cpp's decode time
(perf counters) and the wall clock, minimum over the rounds (on a shared CPU only the
counts are exact). ``--ahead`` makes the batch step start its next decode before its text
work, as on a fully offloaded CUDA model (``starts_ahead``), so the step order is a GPU's.
The model is the tests' tiny synthetic one unless ``--model`` names another GGUF.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import llamakit
import llamakit._batch as batch_module
from llamakit._native import memory
from llamakit._native.batch import BatchHandle
from llamakit.testing import write_llama_model


def ubatch_sizes(seq_ids: Sequence[int], n_ubatch: int) -> list[int]:
    """The ubatch sizes llama.cpp's ``split_equal(n_ubatch, sequential=True)`` cuts a batch
    of one-sequence tokens into: each ubatch takes the run of consecutive sequence ids
    starting at the first unused token, and as many tokens of each as the one with the
    fewest left allows, up to ``n_ubatch`` tokens."""
    left: dict[int, int] = Counter(seq_ids)
    order = list(dict.fromkeys(seq_ids))
    sizes: list[int] = []
    while any(left.values()):
        run: list[int] = []
        for seq in order:
            if left[seq] and (not run or seq == run[-1] + 1):
                run.append(seq)
        per_seq = min(left[seq] for seq in run)
        per_seq = min(per_seq, max(1, n_ubatch // len(run)))
        for seq in run:
            left[seq] -= per_seq
        sizes.append(per_seq * len(run))
    return sizes


class _Recorder:
    """Every ``BatchHandle.fill`` of an arm: its size, outputs and ubatch sizes."""

    def __init__(self, n_ubatch: int) -> None:
        self.n_ubatch = n_ubatch
        self.decodes: list[tuple[int, int, list[int]]] = []
        self._fill = BatchHandle.fill

    def install(self) -> None:
        recorder, original = self, self._fill

        def fill(handle: BatchHandle, tokens: Sequence[int], positions: Sequence[int],
                 seq_ids: Sequence[int], outputs: Sequence[int]) -> None:
            recorder.decodes.append((len(tokens), sum(outputs),
                                     ubatch_sizes(seq_ids, recorder.n_ubatch)))
            original(handle, tokens, positions, seq_ids, outputs)

        BatchHandle.fill = fill  # type: ignore[method-assign,assignment]


class _Mixed(batch_module.BatchStepper):
    def _launch(self) -> None:
        self.lockstep = False
        super()._launch()


def _raw(ctx: llamakit.Context, prompts: list[list[int]], n_gen: int, pool: list[int]) -> None:
    handle = ctx._handle
    n_batch, npl, n_prompt = handle.n_batch, len(prompts), len(prompts[0])
    batch = BatchHandle(handle.native, n_batch)
    try:
        rows = [(token, pos, seq, int(pos == n_prompt - 1))
                for seq, prompt in enumerate(prompts) for pos, token in enumerate(prompt)]
        for start in range(0, len(rows), n_batch):
            chunk = rows[start:start + n_batch]
            batch.fill(*(list(column) for column in zip(*chunk, strict=True)))
            batch.decode(handle)
        handle.synchronize()
        for step in range(n_gen):
            batch.fill([pool[(step * npl + seq) % len(pool)] for seq in range(npl)],
                       [n_prompt + step] * npl, list(range(npl)), [1] * npl)
            batch.decode(handle)
            handle.synchronize()
    finally:
        batch.close()
        memory.kv_clear(handle)


def run_arm(arm: str, ctx: llamakit.Context, prompts: list[list[int]], n_gen: int,
            bias: dict[str, float], pool: list[int], recorder: _Recorder) -> dict[str, Any]:
    recorder.decodes.clear()
    ctx.reset_perf()
    original = batch_module.BatchStepper
    if arm == "mixed":
        batch_module.BatchStepper = _Mixed  # type: ignore[misc]
    started = time.perf_counter()
    try:
        if arm == "raw":
            _raw(ctx, prompts, n_gen, pool)
        else:
            results = ctx.generate_batch(prompts, max_new_tokens=n_gen, temperature=0,
                                         logit_bias=bias)
            generated = sum(len(r.tokens) for r in results)
            if generated != n_gen * len(prompts):
                raise RuntimeError(f"{generated} tokens, not {n_gen * len(prompts)}")
    finally:
        wall = time.perf_counter() - started
        batch_module.BatchStepper = original  # type: ignore[misc]
    perf = ctx.perf()
    sizes = [size for _, _, split in recorder.decodes for size in split]
    return {"decodes": len(recorder.decodes), "ubatches": len(sizes),
            "graphs_reused": int(perf["n_reused"]),
            "outputs": sum(outputs for _, outputs, _ in recorder.decodes),
            "ubatch_sizes": dict(sorted(Counter(sizes).items())),
            "first_decodes": [split for _, _, split in recorder.decodes[:6]],
            "decode_ms": perf["t_p_eval_ms"] + perf["t_eval_ms"], "wall_ms": wall * 1e3}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--npl", type=int, default=64)
    parser.add_argument("--n-prompt", type=int, default=128)
    parser.add_argument("--n-gen", type=int, default=128)
    parser.add_argument("--ahead", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.ahead:
        batch_module.starts_ahead = lambda model: True
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or write_llama_model(Path(tmp) / "tiny.gguf")
        with llamakit.load_model(path, backend="cpu") as model, \
                model.new_context(n_ctx=args.npl * (args.n_prompt + args.n_gen),
                                  n_seq_max=args.npl, n_batch=2048, n_ubatch=512,
                                  n_threads=2) as ctx:
            rng = random.Random(0)
            specials = set(model.special_tokens)
            pool = [t for t in range(model.n_vocab) if t not in specials]
            prompts = [[rng.choice(pool) for _ in range(args.n_prompt)]
                       for _ in range(args.npl)]
            bias = {str(t): float("-inf") for t in model.special_tokens if model.is_eog(t)}
            recorder = _Recorder(512)
            recorder.install()
            rounds: dict[str, list[dict[str, Any]]] = {"lockstep": [], "mixed": [], "raw": []}
            for _ in range(args.rounds):
                for arm, runs in rounds.items():
                    runs.append(run_arm(arm, ctx, prompts, args.n_gen, bias, pool, recorder))
    report: dict[str, Any] = {"npl": args.npl, "n_prompt": args.n_prompt,
                              "n_gen": args.n_gen, "ahead": args.ahead, "arms": {}}
    for arm, runs in rounds.items():
        best = dict(runs[0])
        best["decode_ms"] = min(run["decode_ms"] for run in runs)
        best["wall_ms"] = min(run["wall_ms"] for run in runs)
        report["arms"][arm] = best
        print(f"{arm:8s} decodes {best['decodes']:4d}  ubatches {best['ubatches']:4d}  "
              f"graphs reused {best['graphs_reused']:4d}  outputs {best['outputs']:5d}  "
              f"decode {best['decode_ms']:7.0f} ms  wall {best['wall_ms']:7.0f} ms")
        print(f"         ubatch sizes {best['ubatch_sizes']}")
        print(f"         first decodes' ubatches {best['first_decodes']}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
