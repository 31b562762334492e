#!/usr/bin/env python3
"""What llamakit's GGUF validator costs, next to what loading the model costs.

    python benchmarks/gguf_validate.py                     # writes a ~1 GB model first
    python benchmarks/gguf_validate.py --model M.gguf [--runs 20] [--json out.json]

The synthetic model (``--shape 1gb``: llama-bpe's 128,256-token vocabulary, n_embd 1536,
4 layers, F16, about 1.0 GB) is written once into ``--dir``. For each file:

- validate (warm): ``validate_gguf`` with the file in the page cache, ``--runs`` times;
- validate (cold): the same after ``posix_fadvise(DONTNEED)`` dropped this file's cached
  pages (only this file's; nothing system-wide), so its header is read from disk;
- load: ``load_model(validate=False)`` plus close on the CPU backend (llama.cpp parses the
  same header, builds the vocabulary and maps the weights), ``--load-runs`` times.

The validator reads only the header, so its cost follows the metadata (mostly the
tokenizer's arrays), not the size of the weights; the vocab-only GGUFs that llama.cpp ships
(``--vocabs``) show the worst headers at hand. Reports min and median wall time, and the
CPU time of the median validate run (robust on a loaded machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import llamakit

SHAPES = {
    "1gb": {"vocab": "llama-bpe", "n_embd": 1536, "n_layer": 4, "n_head": 12, "n_head_kv": 4,
            "n_ff": 4096, "dtype": "f16"},
    "small": {"vocab": "llama-spm", "n_embd": 64, "n_layer": 2, "n_head": 4, "n_head_kv": 2,
              "n_ff": 128, "dtype": "f32"},
}


def _drop_from_page_cache(path: Path) -> None:
    with open(path, "rb") as handle:
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _timed(call: Any, runs: int, before: Any = None) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(runs):
        if before is not None:
            before()
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def measure(path: Path, runs: int, load_runs: int) -> dict[str, Any]:
    summary = llamakit.validate_gguf(path)
    row: dict[str, Any] = {"file": path.name, "bytes": path.stat().st_size,
                           "header_bytes": summary.data_offset, "n_kv": summary.n_kv,
                           "n_tensors": summary.n_tensors}
    walls, cpus = _timed(lambda: llamakit.validate_gguf(path), runs)
    row["validate_warm_ms"] = {"min": min(walls) * 1e3, "median": statistics.median(walls) * 1e3,
                               "cpu_median": statistics.median(cpus) * 1e3}
    if hasattr(os, "posix_fadvise"):
        walls, _ = _timed(lambda: llamakit.validate_gguf(path), max(3, runs // 4),
                          before=lambda: _drop_from_page_cache(path))
        row["validate_cold_ms"] = {"min": min(walls) * 1e3,
                                   "median": statistics.median(walls) * 1e3}
    if load_runs and summary.n_tensors:
        def load() -> None:
            llamakit.load_model(path, backend="cpu", validate=False).close()

        load()  # the native module and the page cache are warm for every run
        walls, _ = _timed(load, load_runs)
        row["load_ms"] = {"min": min(walls) * 1e3, "median": statistics.median(walls) * 1e3}
        row["validate_share_of_load"] = (row["validate_warm_ms"]["median"]
                                         / row["load_ms"]["median"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF to measure (default: synthetic)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1gb")
    parser.add_argument("--dir", type=Path, default=Path.home() / ".cache" / "llamakit" / "bench")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--load-runs", type=int, default=5)
    parser.add_argument("--vocabs", action="store_true",
                        help="also measure llama.cpp's vocab-only GGUFs (models/ggml-vocab-*)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    paths = []
    if args.model is not None:
        paths.append(args.model)
    else:
        from llamakit.testing import write_llama_model

        path = args.dir / f"validate-{args.shape}.gguf"
        if not path.exists():
            started = time.perf_counter()
            write_llama_model(path, **SHAPES[args.shape])  # type: ignore[arg-type]
            print(f"wrote {path} in {time.perf_counter() - started:.0f} s")
        paths.append(path)
    if args.vocabs:
        from llamakit._build.source import source_tree

        paths += sorted((source_tree().path / "models").glob("ggml-vocab-*.gguf"))

    rows = [measure(p, args.runs, args.load_runs) for p in paths]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| file | size | header | validate warm (min / median / cpu) | cold (median) "
          "| load (median) | share |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        warm = row["validate_warm_ms"]
        cold = row.get("validate_cold_ms", {}).get("median")
        load = row.get("load_ms", {}).get("median")
        share = row.get("validate_share_of_load")
        print(f"| {row['file']} | {row['bytes'] / 1e6:.0f} MB | {row['header_bytes'] / 1e6:.1f} MB "
              f"| {warm['min']:.1f} / {warm['median']:.1f} / {warm['cpu_median']:.1f} ms "
              f"| {'-' if cold is None else f'{cold:.1f} ms'} "
              f"| {'-' if load is None else f'{load:.0f} ms'} "
              f"| {'-' if share is None else f'{share:.0%}'} |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
