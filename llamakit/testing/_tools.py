"""llama.cpp's own command-line tools (``llama-bench``, ``llama-perplexity``,
``llama-gguf-split``, ``llama-tokenize``, ...), built from the CPU variant's tree and flags.

The flags are exactly those of the CPU variant with ``LLAMA_BUILD_TOOLS=ON`` and
``LLAMA_BUILD_COMMON=ON`` added, so the ggml kernels are the ones llamakit runs. Every tool
shares **one** build folder per variant key, ``<cache>/tools/<key>/``: the first tool pays
for configuring and for libllama, libggml and common; each further tool compiles only its
own sources. Only the named targets are built: the default ``all`` includes the ``app``
target, whose build-info step wants a git checkout that a tree unpacked from an sdist lacks.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from .._build.cache import cache_dir, file_lock, hash_json
from .._build.source import reset_if_other_source, source_tree
from .._build.variant import _lib_key, tool_path
from .._errors import BuildError

__all__ = ["build_tool", "cpu_variant_flags"]

TOOL_FLAGS = {"LLAMA_BUILD_TOOLS": "ON", "LLAMA_BUILD_COMMON": "ON"}
#: Targets behind a CMake option the variant turns off: the shared folder is reconfigured
#: once with the option on (that adds the target's directory; the other targets' objects
#: and the folder's key stay as they are).
TARGET_FLAGS = {"llama-server": {"LLAMA_BUILD_SERVER": "ON"}}


def cpu_variant_flags() -> tuple[str, dict[str, str]]:
    """The CPU variant's library key and its final CMake flags."""
    from .._plugins.manager import get_plugin_host

    spec = get_plugin_host().backends()["cpu"]
    lib_key, inputs = _lib_key(spec)
    return lib_key, dict(inputs["cmake_flags"])


def build_tool(target: str, *, log_to_stderr: bool = False) -> Path:
    """The binary of llama.cpp's CMake target ``target``, built on first use (minutes; then
    cached by the CPU variant's inputs)."""
    lib_key, variant_flags = cpu_variant_flags()
    flags = {**variant_flags, **TOOL_FLAGS}
    key = hash_json({"variant": lib_key, "flags": flags})[:16]
    build_dir = cache_dir() / "tools" / key
    binary = build_dir / "bin" / target
    done = build_dir / f".built-{target}"
    with file_lock(build_dir.with_name(build_dir.name + ".lock")):
        if binary.is_file() and done.is_file():
            return binary
        cmake, ninja = tool_path("cmake"), tool_path("ninja")
        if cmake is None or ninja is None:
            raise BuildError("cmake and ninja are needed to build llama.cpp's tools: "
                             "pip install cmake ninja")
        reset_if_other_source(build_dir, source_tree().path)
        build_dir.mkdir(parents=True, exist_ok=True)
        log = build_dir / f"build-{target}.log"
        if log_to_stderr:
            print(f"building {target} (once; a few minutes; log: {log})", flush=True)
        try:
            with open(log, "wb") as sink:
                extra = TARGET_FLAGS.get(target, {})
                if not (build_dir / "build.ninja").is_file() or extra:
                    subprocess.run([cmake, "-S", str(source_tree().path), "-B", str(build_dir),
                                    "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}",
                                    *(f"-D{k}={v}" for k, v in {**flags, **extra}.items())],
                                   stdout=sink, stderr=subprocess.STDOUT, check=True)
                subprocess.run([ninja, "-C", str(build_dir), "-j", str(os.cpu_count() or 2),
                                target], stdout=sink, stderr=subprocess.STDOUT, check=True)
        except subprocess.CalledProcessError as exc:
            raise BuildError(f"building llama.cpp's {target} failed; see {log}") from exc
        (build_dir / "tools.json").write_text(json.dumps(
            {"variant_key": lib_key, "cmake_flags": flags, "llama_cpp": str(source_tree().path)},
            indent=2))
        # Written last: a build interrupted before this line is redone.
        done.write_text(target)
    return binary
