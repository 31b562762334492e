"""Quantization throughput: ``llamakit.quantize`` against llama.cpp's own ``llama-quantize``.

Both run in one process tree on one machine, on the same synthetic F16 model, with the same
thread count; ``llama-quantize`` is built from the very llama.cpp tree and CMake flags of
llamakit's CPU variant (plus ``LLAMA_BUILD_TOOLS``/``LLAMA_BUILD_COMMON``), cached by those
inputs. Runs alternate between the two tools so that drift (page cache, clocks) hits both.

    python benchmarks/quantize.py [--types Q8_0,Q4_K_M] [--threads 4,16] [--repeat 3]
                                  [--n-embd 2048 --n-layer 6 --n-ff 5632] [--json OUT]

Prints one line per run and a summary table; the ratio is llamakit's time over
llama-quantize's (1.00 = same speed, below 1 = llamakit faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: benchlib

import llamakit  # noqa: E402
from llamakit.testing import write_llama_model  # noqa: E402

_QUANTIZE_TIME = re.compile(r"quantize time =\s*([\d.]+) ms")


def build_llama_quantize() -> Path:
    """llama.cpp's ``llama-quantize``, built once per set of inputs from the CPU variant's tree."""
    from benchlib.llama_bench import build_cpu_tool

    return build_cpu_tool("llama-quantize")


def _run_llama_quantize(binary: Path, src: Path, dst: Path, ftype: str,
                        threads: int) -> tuple[float, float]:
    started = time.perf_counter()
    done = subprocess.run([str(binary), str(src), str(dst), ftype, str(threads)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"llama-quantize failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    match = _QUANTIZE_TIME.search(done.stdout)
    inner = float(match.group(1)) / 1000 if match else wall
    return wall, inner


def _run_llamakit(src: Path, dst: Path, ftype: str, threads: int) -> float:
    started = time.perf_counter()
    llamakit.quantize(src, dst, ftype, nthread=threads, progress=False)
    return time.perf_counter() - started


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--types", default="Q8_0,Q4_K_M")
    parser.add_argument("--threads", default=str(os.cpu_count() or 1),
                        help="comma-separated thread counts, each used by both tools")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--n-embd", type=int, default=2048)
    parser.add_argument("--n-layer", type=int, default=6)
    parser.add_argument("--n-ff", type=int, default=5632)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    binary = build_llama_quantize()
    llamakit.quantization_types("cpu")  # builds and loads the CPU variant before timing
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="llamakit-bench-quantize-"))
    src = workdir / f"llama-{args.n_embd}x{args.n_layer}-f16.gguf"
    if not src.exists():
        print(f"writing {src}", file=sys.stderr)
        write_llama_model(src, dtype="f16", n_embd=args.n_embd, n_layer=args.n_layer,
                          n_ff=args.n_ff, n_head=16, n_head_kv=8)
    src_mb = src.stat().st_size / 1e6
    results: list[dict[str, Any]] = []
    for threads, ftype in [(int(t), f) for t in args.threads.split(",")
                           for f in args.types.split(",")]:
        ours, theirs, theirs_inner = [], [], []
        # A warm-up of each: page cache, quantization tables (ggml_quantize_init).
        _run_llama_quantize(binary, src, workdir / "ref.gguf", ftype, threads)
        _run_llamakit(src, workdir / "ours.gguf", ftype, threads)
        for i in range(args.repeat):
            wall, inner = _run_llama_quantize(binary, src, workdir / "ref.gguf", ftype,
                                              threads)
            theirs.append(wall)
            theirs_inner.append(inner)
            ours.append(_run_llamakit(src, workdir / "ours.gguf", ftype, threads))
            print(f"{ftype} x{threads} run {i + 1}: llamakit {ours[-1]:.3f} s, "
                  f"llama-quantize {wall:.3f} s (its own quantize time {inner:.3f} s)",
                  file=sys.stderr)
        same_size = (workdir / "ref.gguf").stat().st_size == (workdir / "ours.gguf").stat().st_size
        same_bytes = (workdir / "ref.gguf").read_bytes() == (workdir / "ours.gguf").read_bytes()
        result = {
            "ftype": ftype,
            "threads": threads,
            "src_mb": round(src_mb, 1),
            "llamakit_s": round(statistics.median(ours), 3),
            "llama_quantize_wall_s": round(statistics.median(theirs), 3),
            "llama_quantize_inner_s": round(statistics.median(theirs_inner), 3),
            "ratio_wall": round(statistics.median(ours) / statistics.median(theirs), 3),
            "ratio_inner": round(statistics.median(ours) / statistics.median(theirs_inner), 3),
            "llamakit_mb_per_s": round(src_mb / statistics.median(ours), 1),
            "llama_quantize_mb_per_s": round(src_mb / statistics.median(theirs), 1),
            "identical_output": same_bytes,
            "same_size": same_size,
        }
        results.append(result)
    print()
    print(f"machine: {_cpu_name()}, {os.cpu_count()} CPUs; model {src.name} "
          f"({src_mb:.0f} MB F16); median of {args.repeat} runs after a warm-up")
    print("| type | threads | llamakit | llama-quantize (wall) | ratio | same bytes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['ftype']} | {r['threads']} | {r['llamakit_s']:.2f} s "
              f"({r['llamakit_mb_per_s']:.0f} MB/s) | {r['llama_quantize_wall_s']:.2f} s "
              f"({r['llama_quantize_mb_per_s']:.0f} MB/s) | {r['ratio_wall']:.3f} | "
              f"{r['identical_output']} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
