"""llama.cpp's own ``llama-bench``, built once from llamakit's CPU variant's tree and flags.

The flags are exactly those of the CPU variant (``COMMON_CMAKE_FLAGS`` plus the plugin's,
``GGML_NATIVE=ON`` by default) with ``LLAMA_BUILD_TOOLS=ON`` and ``LLAMA_BUILD_COMMON=ON``
added, so the ggml kernels are the ones llamakit runs. Only the ``llama-bench`` target is
built: the default ``all`` includes the ``app`` target, whose build-info step wants a git
checkout that a tree unpacked from llama-cpp-python's sdist does not have. The binary is
cached under ``~/.cache/llamakit/bench/llama-bench-<key>/`` where the key covers the
variant's library key (source, flags, CPU, compiler, platform) and the extra flags.

    python benchmarks/_llama_bench.py     # builds if needed, prints the binary's path
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from llamakit._build.cache import cache_dir, file_lock, hash_json
from llamakit._build.source import source_tree
from llamakit._build.variant import _lib_key, tool_path
from llamakit._plugins.manager import get_plugin_host

__all__ = ["build_cpu_tool", "build_llama_bench", "cpu_variant_flags", "run_llama_bench"]

TOOL_FLAGS = {"LLAMA_BUILD_TOOLS": "ON", "LLAMA_BUILD_COMMON": "ON"}


def cpu_variant_flags() -> tuple[str, dict[str, str]]:
    """The CPU variant's library key and its final CMake flags."""
    spec = get_plugin_host().backends()["cpu"]
    lib_key, inputs = _lib_key(spec)
    return lib_key, dict(inputs["cmake_flags"])


def build_cpu_tool(target: str, *, verbose: bool = True) -> Path:
    """One of llama.cpp's tools (``llama-bench``, ``llama-quantize``) for the CPU variant's
    inputs (same tree, same CMake flags plus the tools), built on first use."""
    lib_key, variant_flags = cpu_variant_flags()
    flags = {**variant_flags, **TOOL_FLAGS}
    key = hash_json({"variant": lib_key, "flags": flags, "targets": [target]})
    build_dir = cache_dir() / "bench" / f"{target}-{key[:16]}"
    binary = build_dir / "bin" / target
    with file_lock(build_dir.with_name(build_dir.name + ".lock")):
        if binary.is_file() and (build_dir / "bench.json").is_file():
            return binary
        cmake, ninja = tool_path("cmake"), tool_path("ninja")
        if cmake is None or ninja is None:
            raise SystemExit("cmake and ninja are needed: pip install cmake ninja")
        build_dir.mkdir(parents=True, exist_ok=True)
        log = build_dir / "build.log"
        if verbose:
            print(f"building {target} (once; a few minutes; log: {log})", file=sys.stderr)
        with open(log, "wb") as sink:
            subprocess.run([cmake, "-S", str(source_tree().path), "-B", str(build_dir), "-G",
                            "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}",
                            *(f"-D{k}={v}" for k, v in flags.items())],
                           stdout=sink, stderr=subprocess.STDOUT, check=True)
            # Only this target: the `app` target needs git's build info, which a tree
            # unpacked from an sdist lacks.
            subprocess.run([ninja, "-C", str(build_dir), "-j", str(os.cpu_count() or 2),
                            target], stdout=sink, stderr=subprocess.STDOUT, check=True)
        # Written last: a build interrupted before this line is redone.
        (build_dir / "bench.json").write_text(json.dumps(
            {"variant_key": lib_key, "cmake_flags": flags, "llama_cpp": str(source_tree().path)},
            indent=2))
    return binary


def build_llama_bench(*, verbose: bool = True) -> Path:
    """The ``llama-bench`` binary for the CPU variant's inputs, built on first use."""
    return build_cpu_tool("llama-bench", verbose=verbose)


def run_llama_bench(binary: Path, model: Path, *, threads: int, n_prompt: int, n_gen: int,
                    repetitions: int, n_batch: int = 2048, n_ubatch: int = 512,
                    extra: list[str] | None = None) -> list[dict[str, Any]]:
    """Run ``llama-bench`` once (it warms up by itself) and return its JSON records.

    Each record holds ``samples_ts`` (tokens/s of each repetition) and ``avg_ts``.
    """
    command = [str(binary), "-m", str(model), "-t", str(threads), "-p", str(n_prompt),
               "-n", str(n_gen), "-r", str(repetitions), "-b", str(n_batch), "-ub",
               str(n_ubatch), "-ngl", "0", "-o", "json", *(extra or [])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"llama-bench failed ({done.returncode}): {' '.join(command)}\n"
                           f"{done.stderr[-3000:]}")
    records: list[dict[str, Any]] = json.loads(done.stdout)
    return records


if __name__ == "__main__":
    print(build_llama_bench())
