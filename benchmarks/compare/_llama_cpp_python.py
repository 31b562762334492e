"""llama-cpp-python 0.3.36 in a virtual environment of its own, built from source.

llama-cpp-python 0.3.36 vendors the very llama.cpp commit llamakit pins. To be sure both
sides run the same kernels, its ``vendor/llama.cpp`` is replaced by the tree llamakit builds
from (``llamakit._build.source.source_tree()``: the pinned tree with its patches, or
``$LLAMAKIT_LLAMA_CPP_DIR``), and the CPU variant's ``GGML_*`` and ``CMAKE_C(XX)_FLAGS``
flags are passed through ``CMAKE_ARGS`` (its build type through scikit-build-core's
``SKBUILD_CMAKE_BUILD_TYPE``). Not passed: the flags that only make sense for llamakit's
static build (``BUILD_SHARED_LIBS``, ``LLAMA_*``, ``CMAKE_POSITION_INDEPENDENT_CODE``):
llama-cpp-python loads shared libraries by design.
``LLAVA_BUILD=OFF`` skips the multimodal library, which no benchmark loads.

The sdist is the one llamakit downloaded and verified against ``llama.cpp/pin.json``. The
environment lives under ``~/.cache/llamakit/bench/lcp-venv-<key>/``, keyed by the version,
the source identity, the flags, the CPU variant's key and this Python's version.

    python benchmarks/_llama_cpp_python.py     # creates it if needed, prints its python
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import venv
from collections.abc import Mapping
from pathlib import Path

from llamakit._build.cache import cache_dir, file_lock, hash_json
from llamakit._build.source import _download_artifact, load_pin, source_identity, source_tree

__all__ = ["VERSION", "cmake_args", "ensure_llama_cpp_python"]

VERSION = "0.3.36"
_PASSED = ("GGML_", "CMAKE_C_FLAGS", "CMAKE_CXX_FLAGS")


def cmake_args(variant_flags: Mapping[str, str]) -> list[str]:
    """``CMAKE_ARGS`` for llama-cpp-python that reproduce the CPU variant's ggml (the build
    type goes through ``SKBUILD_CMAKE_BUILD_TYPE``: scikit-build-core ignores it here)."""
    passed = [f"-D{k}={v}" for k, v in sorted(variant_flags.items()) if k.startswith(_PASSED)]
    return [*passed, "-DLLAVA_BUILD=OFF"]


def _stage_sdist(sdist: Path, tree: Path, dest: Path) -> Path:
    """Unpack the sdist without its vendored llama.cpp and link ``tree`` in its place."""
    with tarfile.open(sdist, "r:gz") as tar:
        members = [m for m in tar.getmembers()
                   if "/vendor/llama.cpp/" not in m.name + "/" or m.name.endswith("/vendor")]
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # Python < 3.11.4; the sdist's checksum was verified
            tar.extractall(dest, members=members)  # noqa: S202
    root = next(dest.iterdir())
    vendor = root / "vendor" / "llama.cpp"
    if vendor.exists():
        shutil.rmtree(vendor)
    vendor.parent.mkdir(parents=True, exist_ok=True)
    vendor.symlink_to(tree, target_is_directory=True)
    return root


def ensure_llama_cpp_python(variant_key: str, variant_flags: Mapping[str, str], *,
                            verbose: bool = True) -> Path:
    """The python of a virtual environment holding llama-cpp-python, made on first use."""
    args = cmake_args(variant_flags)
    key = hash_json({"version": VERSION, "source": source_identity(), "cmake_args": args,
                     "build_type": variant_flags.get("CMAKE_BUILD_TYPE", "Release"),
                     "variant": variant_key, "python": list(sys.version_info[:2])})
    home = cache_dir() / "bench" / f"lcp-venv-{key[:16]}"
    python = home / "bin" / "python"
    marker = home / "bench.json"
    with file_lock(home.with_name(home.name + ".lock")):
        if marker.is_file() and python.is_file():
            return python
        if home.exists():
            shutil.rmtree(home)
        pin = load_pin()
        if pin["artifact"]["version"] != VERSION:
            raise SystemExit(f"llama.cpp/pin.json pins llama-cpp-python "
                             f"{pin['artifact']['version']}, this harness expects {VERSION}")
        sdist = _download_artifact(pin, cache_dir() / "downloads")
        tree = source_tree().path
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
        log = home / "build.log"
        if verbose:
            print(f"building llama-cpp-python {VERSION} from source with {tree} (once; "
                  f"several minutes; log: {log})", file=sys.stderr)
        # scikit-build-core splits CMAKE_ARGS like a shell: flags with spaces are quoted.
        env = {**os.environ, "CMAKE_ARGS": " ".join(shlex.quote(a) for a in args),
               "SKBUILD_CMAKE_BUILD_TYPE": variant_flags.get("CMAKE_BUILD_TYPE", "Release"),
               "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
        env.pop("PYTHONPATH", None)
        with tempfile.TemporaryDirectory(prefix="lcp-stage-") as stage, \
                open(log, "wb") as sink:
            root = _stage_sdist(sdist, tree, Path(stage))
            subprocess.run([str(python), "-m", "pip", "install", "--no-cache-dir", "-v",
                            str(root)], env=env, stdout=sink, stderr=subprocess.STDOUT,
                           check=True)
        done = subprocess.run([str(python), "-c",
                               "import llama_cpp; print(llama_cpp.__version__)"],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0 or done.stdout.strip() != VERSION:
            raise SystemExit(f"llama-cpp-python did not import: {done.stderr[-2000:]}")
        marker.write_text(json.dumps({"version": VERSION, "cmake_args": args,
                                      "llama_cpp": str(tree), "source": source_identity(),
                                      "sdist_sha256": pin["artifact"]["sha256"]}, indent=2))
    return python


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: benchlib
    from benchlib.llama_bench import cpu_variant_flags

    print(ensure_llama_cpp_python(*cpu_variant_flags()))
