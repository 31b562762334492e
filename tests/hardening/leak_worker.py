"""Subprocess of the leak test: resident memory across load/close cycles and generate calls.

Usage: ``python leak_worker.py MODEL.gguf LOADS GENERATES``; prints one JSON object with
the resident set size (bytes) after warm-up and after each phase. A fresh process keeps the
numbers free of what the test session itself allocates.
"""

from __future__ import annotations

import gc
import json
import os
import sys


def rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    import llamakit

    path, loads, generates = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    def cycle() -> None:
        with llamakit.load_model(path, backend="cpu") as model, \
                model.new_context(n_ctx=64, n_batch=16, n_threads=1) as ctx:
            ctx.tokenize("warm")

    for _ in range(10):
        cycle()
    before_loads = rss()
    for _ in range(loads):
        cycle()
    after_loads = rss()
    with llamakit.load_model(path, backend="cpu") as model, \
            model.new_context(n_ctx=128, n_batch=32, n_threads=1) as ctx:
        for i in range(50):
            ctx.generate(f"Hello {i % 7}", max_new_tokens=3, temperature=0.7, seed=i)
        before_generates = rss()
        for i in range(generates):
            ctx.generate(f"Hello {i % 7}", max_new_tokens=3, temperature=0.7, seed=i)
        after_generates = rss()
    print(json.dumps({"before_loads": before_loads, "after_loads": after_loads,
                      "before_generates": before_generates,
                      "after_generates": after_generates}))


if __name__ == "__main__":
    main()
