"""The harness's load part: model load time (cold and warm page cache), peak RSS, embeddings.

Load time and RSS are measured in a fresh process per run, for three sides doing the same
steps (``load_probe.c`` on llama.cpp's C API, ``_load_probe.py`` through llamakit and
through llama-cpp-python): load the model (mmap), make a context, evaluate a prompt and a
few greedy tokens. "Cold" drops the page cache first (``sync; echo 3 >
/proc/sys/vm/drop_caches``, root only), so the model file, the libraries and Python's own
files come from disk.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llamakit._build.cache import cache_dir, file_lock, hash_json
from llamakit._build.variant import BuiltVariant

__all__ = ["can_drop_caches", "compile_load_probe", "measure_embeddings", "measure_load"]

HERE = Path(__file__).resolve().parent
_DROP = Path("/proc/sys/vm/drop_caches")


def can_drop_caches() -> bool:
    return os.geteuid() == 0 and os.access(_DROP, os.W_OK)


def drop_caches() -> None:
    os.sync()
    _DROP.write_text("3\n")


def compile_load_probe(variant: BuiltVariant) -> Path:
    """``load_probe.c`` linked against the CPU variant's own static libraries."""
    source = HERE / "load_probe.c"
    key = hash_json({"variant": variant.info["key"], "source": source.read_text()})[:16]
    out = cache_dir() / "bench" / f"load-probe-{key}"
    binary = out / "load_probe"
    with file_lock(out.with_name(out.name + ".lock")):
        if binary.is_file():
            return binary
        out.mkdir(parents=True, exist_ok=True)
        command = [os.environ.get("CC", "cc"), "-O2", f"-I{variant.include_dir}", str(source),
                   "-o", str(binary), "-Wl,--start-group",
                   *(str(lib) for lib in variant.libraries), "-Wl,--end-group",
                   *variant.link_args, "-lstdc++", "-lm", "-lpthread"]
        subprocess.run(command, check=True)
    return binary


def _run_json(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_ms"] = wall * 1e3
    return result


def measure_load(model: Path, *, probe: Path, lcp_python: Path, threads: int, reps: int,
                 bos: int, cold: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Interleaved runs of the three sides; every run in a new process."""
    n_ctx, n_prompt, n_gen = 640, 32, 16
    args = [str(model), str(n_ctx), str(threads), str(n_prompt), str(n_gen)]
    env = {**os.environ, "LOAD_PROBE_BOS": str(bos)}
    lcp_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    sides: dict[str, tuple[list[str], dict[str, str]]] = {
        "llama.cpp (C)": ([str(probe), *args], env),
        "llamakit": ([sys.executable, str(HERE / "_load_probe.py"), "llamakit", *args], env),
        "llama-cpp-python": ([str(lcp_python), str(HERE / "_load_probe.py"), "llama_cpp",
                              *args], lcp_env),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    order = list(sides)
    if not cold:  # one unrecorded round fills the page cache
        for name in order:
            _run_json(*sides[name])
    for rep in range(reps):
        for name in (order if rep % 2 == 0 else order[::-1]):
            if cold:
                drop_caches()
            runs[name].append(_run_json(*sides[name]))
        log(f"  load {'cold' if cold else 'warm'} rep {rep + 1}/{reps}: " + ", ".join(
            f"{n} {runs[n][-1]['load_ms']:.0f} ms" for n in order))
    summary = {}
    for name, samples in runs.items():
        summary[name] = {
            key: statistics.median(s[key] for s in samples)
            for key in ("import_ms", "load_ms", "context_ms", "process_ms", "maxrss_kb",
                        "maxrss_loaded_kb", "maxrss_imported_kb")
            if key in samples[0] and samples[0][key] is not None}
    return {"cold": cold, "n_ctx": n_ctx, "n_prompt": n_prompt, "n_gen": n_gen,
            "summary": summary, "runs": runs}


def measure_embeddings(lk_embed: Callable[[list[str]], dict[str, Any]],
                       lcp_request: Callable[[dict[str, Any]], dict[str, Any]],
                       texts: list[str], n_tokens: int, *, reps: int,
                       log: Callable[[str], None]) -> dict[str, Any]:
    """Interleaved ``Context.embeddings(texts)`` and ``Llama.embed(texts)``."""
    lk_embed(texts[:2])
    lcp_request({"cmd": "embed", "texts": texts[:2]})
    lk: list[float] = []
    lcp: list[float] = []
    for rep in range(reps):
        pair: list[tuple[str, Callable[[], dict[str, Any]]]] = [
                ("llamakit", lambda: lk_embed(texts)),
                ("llama-cpp-python", lambda: lcp_request({"cmd": "embed", "texts": texts}))]
        for name, call in (pair if rep % 2 == 0 else pair[::-1]):
            result = call()
            (lk if name == "llamakit" else lcp).append(result["wall_s"])
        log(f"  embeddings rep {rep + 1}/{reps}: llamakit {lk[-1]:.3f} s, "
            f"llama-cpp-python {lcp[-1]:.3f} s")
    lk_s, lcp_s = statistics.median(lk), statistics.median(lcp)
    return {"n_texts": len(texts), "n_tokens": n_tokens,
            "llamakit": {"median_s": lk_s, "texts_per_s": len(texts) / lk_s,
                         "tokens_per_s": n_tokens / lk_s, "samples_s": lk},
            "llama-cpp-python": {"median_s": lcp_s, "texts_per_s": len(texts) / lcp_s,
                                 "tokens_per_s": n_tokens / lcp_s, "samples_s": lcp},
            "ratio": lcp_s / lk_s}
