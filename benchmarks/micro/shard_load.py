#!/usr/bin/env python3
"""Load time of one model as one GGUF file and as shards written by llama-gguf-split.

    python benchmarks/micro/shard_load.py [--dir /tmp/shardbench] [--runs 7] [--split-size 80M]

Writes a synthetic llama (n_embd 1024, 8 layers, ffn 2816, F16, about 320 MB; one random
array per shape) once into ``--dir``, splits it with the pinned tree's ``llama-gguf-split
--split-max-size``, then loads each (``load_model`` on the CPU backend, validation of
every shard included, then close), alternating the two, ``--runs`` times each, with and
without mmap. The files stay in the page cache between runs: this measures what sharding
adds (more files to open, map and check), not the disk.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

import llamakit
from llamakit.testing import build_tool, write_llama_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/shardbench"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--split-size", default="80M")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    single = args.dir / "model.gguf"
    if not single.exists():
        write_llama_model(single, n_embd=1024, n_layer=8, n_head=16, n_head_kv=8, n_ff=2816,
                          dtype="f16", reuse_weights=True)
    if not list(args.dir.glob("model-0*-of-*.gguf")):
        subprocess.run([str(build_tool("llama-gguf-split")), "--split", "--split-max-size",
                        args.split_size, str(single), str(args.dir / "model")], check=True,
                       capture_output=True)
    shards = sorted(args.dir.glob("model-0*-of-*.gguf"))
    print(f"one file: {single.stat().st_size:,} bytes; {len(shards)} shards: "
          f"{', '.join(f'{p.stat().st_size:,}' for p in shards)} bytes")
    for use_mmap in (True, False):
        times: dict[str, list[float]] = {"one file": [], f"{len(shards)} shards": []}
        for _ in range(args.runs):
            for name, path in zip(times, (single, shards[0]), strict=True):
                start = time.perf_counter()
                model = llamakit.load_model(path, backend="cpu", use_mmap=use_mmap,
                                            progress=False)
                times[name].append(time.perf_counter() - start)
                model.close()
        for name, values in times.items():
            print(f"use_mmap={use_mmap!s:5} {name:9}: median {statistics.median(values) * 1e3:7.1f}"
                  f" ms (min {min(values) * 1e3:.1f}, max {max(values) * 1e3:.1f}; "
                  f"{len(values)} runs)")
    for name, path in (("one file", single), ("shards", shards[0])):
        start = time.perf_counter()
        llamakit.validate_gguf(path)
        print(f"validate_gguf {name}: {(time.perf_counter() - start) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
