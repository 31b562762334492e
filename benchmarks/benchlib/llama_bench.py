"""llama.cpp's own ``llama-bench``, built once from llamakit's CPU variant's tree and flags.

The flags are exactly those of the CPU variant (``COMMON_CMAKE_FLAGS`` plus the plugin's,
``GGML_NATIVE=ON`` by default) with ``LLAMA_BUILD_TOOLS=ON`` and ``LLAMA_BUILD_COMMON=ON``
added, so the ggml kernels are the ones llamakit runs. Only the ``llama-bench`` target is
built: the default ``all`` includes the ``app`` target, whose build-info step wants a git
checkout that a tree unpacked from llama-cpp-python's sdist does not have. The binary is
cached under ``~/.cache/llamakit/tools/<key>/`` (shared by every tool) where the key covers the
variant's library key (source, flags, CPU, compiler, platform) and the extra flags.

    python benchmarks/_llama_bench.py     # builds if needed, prints the binary's path
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from llamakit.testing._tools import build_tool, cpu_variant_flags

__all__ = ["build_cpu_tool", "build_llama_bench", "cpu_variant_flags", "run_llama_bench"]

def build_cpu_tool(target: str, *, verbose: bool = True) -> Path:
    """One of llama.cpp's tools for the CPU variant's inputs (``llamakit.testing.build_tool``:
    one shared build folder for every tool), built on first use."""
    return build_tool(target, log_to_stderr=verbose)


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
