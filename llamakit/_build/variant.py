"""Build a backend's llama.cpp variant (static libraries) and its cffi module, cached.

Two cache levels, each keyed by everything that changes its output:

* ``llama/<backend>-<key>/``: llama.cpp's static libraries and headers. Key: llama.cpp
  source identity, backend, final CMake flags, the backend's key extras, compiler, platform.
* ``modules/<backend>-<key>/``: the cffi extension. Key: the libraries' key, every file of
  llamakit's ``native/`` (cdefs, shim sources, headers), the Python ABI.
* ``objects/<name>-<key>.o``: the shim's C++ files (``native/*.cpp``), compiled against the
  tree. Key: the source and ``native/*.h``, the libraries' key, compiler and flags.

Changing the shim recompiles only the module (seconds), not llama.cpp (minutes).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .._backend_spec import BackendSpec
from .._errors import BuildError
from .cache import atomic_directory, cache_dir, file_lock, hash_files, hash_json
from .source import data_path, reset_if_other_source, source_identity, source_tree

__all__ = ["BuiltVariant", "ProgressCallback", "build_report", "build_variant", "find_variant",
           "tool_path"]

logger = logging.getLogger("llamakit.build")

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``(stage, done, total)`` while CMake/Ninja and the compiler run."""

COMMON_CMAKE_FLAGS: Mapping[str, str] = {
    "CMAKE_BUILD_TYPE": "Release",
    "BUILD_SHARED_LIBS": "OFF",
    "CMAKE_POSITION_INDEPENDENT_CODE": "ON",
    "LLAMA_BUILD_TESTS": "OFF",
    "LLAMA_BUILD_EXAMPLES": "OFF",
    "LLAMA_BUILD_TOOLS": "OFF",
    "LLAMA_BUILD_SERVER": "OFF",
    "LLAMA_BUILD_COMMON": "OFF",
    "LLAMA_CURL": "OFF",
    "GGML_CCACHE": "OFF",
}
_PROGRESS = re.compile(rb"^\[(\d+)/(\d+)\]")


@dataclass(frozen=True)
class BuiltVariant:
    """A finished build: where its module is and what went into it."""

    backend: str
    module_path: Path
    lib_dir: Path
    info: Mapping[str, Any]

    @property
    def include_dir(self) -> Path:
        return self.lib_dir / "include"

    @property
    def libraries(self) -> list[Path]:
        return [self.lib_dir / "lib" / name for name in self.info["libraries"]]

    @property
    def link_args(self) -> list[str]:
        return list(self.info["link_args"])


def cdef_files(folder: Path) -> list[Path]:
    """The module's declarations: every ``native/*.cdef``, in name order (one per area)."""
    return sorted(folder.glob("*.cdef"))


def tool_path(name: str) -> str | None:
    """A build tool from this Python's environment (PyPI's cmake/ninja) or the PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


@lru_cache(maxsize=1)
def _compiler_identity() -> str:
    parts = []
    for compiler in (os.environ.get("CC", "cc"), os.environ.get("CXX", "c++")):
        try:
            out = subprocess.run([compiler, "--version"], capture_output=True, text=True)
            parts.append(out.stdout.splitlines()[0] if out.stdout else compiler)
        except OSError:
            parts.append(f"{compiler}: missing")
    return " | ".join(parts)


def _lib_key(spec: BackendSpec) -> tuple[str, dict[str, Any]]:
    cmake_flags = {**COMMON_CMAKE_FLAGS, **spec.cmake_flags()}
    inputs = {
        "llama.cpp": source_identity(cmake_flags),
        "backend": spec.name,
        "cmake_flags": cmake_flags,
        "cmake_targets": list(spec.cmake_targets),
        "libraries": list(spec.libraries),
        "extras": dict(spec.key_extras()),
        "compiler": _compiler_identity(),
        "platform": [sys.platform, platform.machine()],
    }
    return hash_json(inputs), inputs


def native_files(folder: Path) -> list[Path]:
    """Every file of ``native/`` (cdefs, C and C++ sources, headers): all of them shape the
    module, so all of them key it."""
    return sorted(path for path in folder.iterdir() if path.is_file())


def area_files(folder: Path, areas: Sequence[str]) -> list[Path]:
    """The files of the optional declaration areas a spec names (``native/areas/<area>.cdef``
    and, when present, ``<area>.h``), in the order named."""
    found = []
    for area in areas:
        cdef = folder / "areas" / f"{area}.cdef"
        if not cdef.is_file():
            raise BuildError(f"native area {area!r} does not exist ({cdef} is missing)")
        found.append(cdef)
        header = cdef.with_suffix(".h")
        if header.is_file():
            found.append(header)
    return found


def _module_key(lib_key: str, spec: BackendSpec | None = None) -> tuple[str, dict[str, Any]]:
    folder = data_path("native")
    native = native_files(folder)
    inputs = {
        "llama": lib_key,
        "native": hash_files(native),
        "python": sysconfig.get_config_var("EXT_SUFFIX"),
        "compiler": _compiler_identity(),
    }
    if spec is not None and spec.native_areas:  # only then: the other variants' keys stay as they were
        inputs["areas"] = {"names": list(spec.native_areas),
                           "files": hash_files(area_files(folder, spec.native_areas))}
    return hash_json(inputs), inputs


def _paths(spec: BackendSpec) -> tuple[Path, Path, str]:
    lib_key, _ = _lib_key(spec)
    mod_key, _ = _module_key(lib_key, spec)
    root = cache_dir()
    return (root / "llama" / f"{spec.name}-{lib_key[:16]}",
            root / "modules" / f"{spec.name}-{mod_key[:16]}", lib_key)


def _load_variant(spec: BackendSpec, lib_dir: Path, mod_dir: Path) -> BuiltVariant | None:
    lib_info = lib_dir / "build.json"
    mod_info = mod_dir / "module.json"
    if not (lib_info.is_file() and mod_info.is_file()):
        return None
    info = {**json.loads(lib_info.read_text()), **json.loads(mod_info.read_text())}
    module = mod_dir / info["module_file"]
    if not module.is_file():
        return None
    return BuiltVariant(backend=spec.name, module_path=module, lib_dir=lib_dir, info=info)


def find_variant(spec: BackendSpec) -> BuiltVariant | None:
    """The cached build for ``spec``'s current inputs, or None; never builds."""
    lib_dir, mod_dir, _ = _paths(spec)
    return _load_variant(spec, lib_dir, mod_dir)


def build_report(spec: BackendSpec, variant: BuiltVariant) -> dict[str, str]:
    """What ``spec.describe_build`` said about ``variant``; for a variant built before
    reports were kept, asked now of its CMake folder when that is still in the cache."""
    report = variant.info.get("build_report")
    if isinstance(report, dict):
        return {str(k): str(v) for k, v in report.items()}
    build_dir = cache_dir() / "cmake" / f"{spec.name}-{str(variant.info.get('key'))[:16]}"
    if spec.describe_build is None or not (build_dir / "build.ninja").is_file():
        return {}
    try:
        return dict(spec.describe_build(build_dir))
    except (OSError, ValueError):  # a half-deleted folder: no report rather than no listing
        return {}


def _run_logged(command: list[str], *, cwd: Path | None, env: Mapping[str, str], log: Path,
                stage: str, backend: str, progress: ProgressCallback | None) -> None:
    with open(log, "ab") as sink:
        sink.write(b"$ " + " ".join(command).encode() + b"\n")
        sink.flush()
        with subprocess.Popen(command, cwd=cwd, env={**os.environ, **env},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
            assert proc.stdout is not None
            last_report = 0.0
            for line in proc.stdout:
                sink.write(line)
                match = _PROGRESS.match(line)
                if match:
                    done, total = int(match.group(1)), int(match.group(2))
                    if progress is not None:
                        progress(stage, done, total)
                    now = time.monotonic()
                    if now - last_report > 10 or done == total:
                        last_report = now
                        logger.info("building %s: %s %d/%d", backend, stage, done, total)
            code = proc.wait()
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise BuildError(f"{stage} of the '{backend}' variant failed (exit {code}); "
                         f"full log: {log}\n{tail}", backend=backend, log_path=log)


def _build_libraries(spec: BackendSpec, lib_dir: Path, lib_key: str, force: bool,
                     progress: ProgressCallback | None) -> None:
    _, inputs = _lib_key(spec)
    cmake, ninja = tool_path("cmake"), tool_path("ninja")
    if cmake is None or ninja is None:
        raise BuildError("cmake and ninja are needed to build llama.cpp: "
                         "pip install cmake ninja (or apt-get install cmake ninja-build)",
                         backend=spec.name)
    source = source_tree()
    build_dir = cache_dir() / "cmake" / f"{spec.name}-{lib_key[:16]}"
    if force and build_dir.exists():
        shutil.rmtree(build_dir)
    reset_if_other_source(build_dir, source.path)
    build_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "build.log"
    log.write_bytes(b"")
    spec.prepare()
    flags = inputs["cmake_flags"]
    configure = [cmake, "-S", str(source.path), "-B", str(build_dir), "-G", "Ninja",
                 f"-DCMAKE_MAKE_PROGRAM={ninja}", *(f"-D{k}={v}" for k, v in flags.items())]
    started = time.monotonic()
    logger.warning("building llama.cpp variant '%s' (once per set of inputs; a few minutes; "
                   "log: %s)", spec.name, log)
    _run_logged(configure, cwd=None, env=spec.env, log=log, stage="configure",
                backend=spec.name, progress=progress)
    jobs = str(os.cpu_count() or 2)
    _run_logged([ninja, "-C", str(build_dir), "-j", jobs, *spec.cmake_targets], cwd=None,
                env=spec.env, log=log, stage="compile", backend=spec.name, progress=progress)
    openmp = b"-fopenmp" in (build_dir / "build.ninja").read_bytes()
    with atomic_directory(lib_dir) as tmp:
        (tmp / "lib").mkdir()
        (tmp / "include").mkdir()
        for relative in spec.libraries:
            library = build_dir / relative
            if not library.is_file():
                raise BuildError(f"the build did not produce {relative}", backend=spec.name,
                                 log_path=log)
            shutil.copy2(library, tmp / "lib" / library.name)
        for header in [*source.include_dirs[0].glob("*.h"), *source.include_dirs[1].glob("*.h")]:
            shutil.copy2(header, tmp / "include" / header.name)
        info = {
            "backend": spec.name,
            "key": lib_key,
            "inputs": inputs,
            "libraries": [Path(r).name for r in spec.libraries],
            "link_args": [*(["-fopenmp"] if openmp else []), *spec.link_args],
            "llama_cpp": str(source.path),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        if spec.describe_build is not None:
            info["build_report"] = dict(spec.describe_build(build_dir))
        (tmp / "build.json").write_text(json.dumps(info, indent=2))
    logger.warning("built llama.cpp variant '%s' in %.0f s", spec.name,
                   time.monotonic() - started)


def _compile_cpp(spec: BackendSpec, native: Path, tree: Path, lib_key: str,
                 tmp: Path, openmp: bool = False) -> list[str]:
    """Compile each ``native/*.cpp`` (C++ parts of the shim, some of which build files of
    llama.cpp's ``common/`` from the tree) into an object file, cached by its inputs.

    They sit in their own cache level because they are slow to compile (llama.cpp's JSON
    code) and change rarely, while the cdefs that key the module change often.
    """
    sources = sorted(native.glob("*.cpp"))
    # ``native/*.sources``: files of llama.cpp's tree (one path a line) compiled as they are,
    # one object each (their file-local names would clash in one translation unit).
    for listing in sorted(native.glob("*.sources")):
        for line in listing.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                if not (tree / line).is_file():
                    raise BuildError(f"{listing.name} names {line}, which the llama.cpp tree "
                                     f"({tree}) lacks")
                sources.append(tree / line)
    if not sources:
        return []
    compiler = os.environ.get("CXX", "c++")
    flags = ["-std=c++17", "-fPIC", "-O2", "-fvisibility=hidden", "-fvisibility-inlines-hidden",
             f"-I{native}", *(f"-I{tree / d}" for d in
                              ("common", "vendor", "include", "ggml/include", "src"))]
    # A llama.cpp built with OpenMP: the shim's own files use OpenMP's threads too (they
    # spin after a graph compute, so they are the ones free to sample; lk_sampling_many).
    own_flags = [*flags, "-fopenmp"] if openmp else flags
    headers = sorted(native.glob("*.h"))
    folder = cache_dir() / "objects"
    folder.mkdir(parents=True, exist_ok=True)
    targets = []
    for source in sources:
        key = hash_json({"source": hash_files([source, *headers]), "llama": lib_key,
                         "compiler": _compiler_identity(),
                         "flags": own_flags if source.parent == native else flags})
        stem = source.stem if source.parent == native else \
            "tree-" + "-".join(source.relative_to(tree).with_suffix("").parts)
        targets.append(folder / f"{stem}-{key[:16]}.o")

    def compile_one(source: Path, target: Path) -> None:
        partial = tmp / (target.name + ".part")
        chosen = own_flags if source.parent == native else flags
        _run_logged([compiler, *chosen, "-c", str(source), "-o", str(partial)], cwd=tmp,
                    env=spec.env, log=tmp / f"{source.stem}.log", stage=f"compile {source.name}",
                    backend=spec.name, progress=None)
        os.replace(partial, target)  # the cache's file system: published whole or not at all

    missing = [(s, t) for s, t in zip(sources, targets, strict=True) if not t.is_file()]
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for future in [pool.submit(compile_one, s, t) for s, t in missing]:
            future.result()
    return [str(t) for t in targets]


def _compile_module(spec: BackendSpec, lib_dir: Path, mod_dir: Path, lib_key: str) -> None:
    import cffi  # a build-time need only

    mod_key, inputs = _module_key(lib_key, spec)
    lib_info = json.loads((lib_dir / "build.json").read_text())
    native = data_path("native")
    areas = area_files(native, spec.native_areas)
    with atomic_directory(mod_dir) as tmp:
        ffi = cffi.FFI()
        ffi.cdef("\n".join(path.read_text() for path in
                           [*cdef_files(native), *(a for a in areas if a.suffix == ".cdef")]))
        headers = "".join(f'#include "{h}"\n' for h in
                          [*(h.name for h in sorted(native.glob("*.h"))),
                           *(f"areas/{a.name}" for a in areas if a.suffix == ".h")])
        ffi.set_source(spec.module_name, '#include "llama.h"\n' + headers)
        c_file = tmp / f"{spec.module_name}.c"
        with contextlib.redirect_stdout(io.StringIO()):  # cffi announces the file it writes
            ffi.emit_c_code(str(c_file))
        module_file = spec.module_name + sysconfig.get_config_var("EXT_SUFFIX")
        libraries = [str(lib_dir / "lib" / name) for name in lib_info["libraries"]]
        objects = _compile_cpp(spec, native, Path(lib_info["llama_cpp"]), lib_key, tmp,
                               "-fopenmp" in lib_info["link_args"])
        command = [
            os.environ.get("CC", "cc"), "-shared", "-fPIC", "-O2", "-fvisibility=hidden",
            f"-I{sysconfig.get_paths()['include']}", f"-I{lib_dir / 'include'}", f"-I{native}",
            str(c_file), str(native / "lk_shim.c"), *objects, "-o", str(tmp / module_file),
            "-Wl,--start-group", *libraries, "-Wl,--end-group", "-Wl,--exclude-libs,ALL",
            *lib_info["link_args"], "-lstdc++", "-lm", "-lpthread",
        ]
        log = tmp / "compile.log"
        _run_logged(command, cwd=tmp, env=spec.env, log=log, stage="native module",
                    backend=spec.name, progress=None)
        check = subprocess.run(
            [sys.executable, "-c",
             "import importlib.util as u, sys; s = u.spec_from_file_location(sys.argv[1], "
             "sys.argv[2]); m = u.module_from_spec(s); s.loader.exec_module(m); "
             "assert m.lib.lk_shim_version() == 1",
             spec.module_name, str(tmp / module_file)], capture_output=True, text=True)
        if check.returncode != 0:
            raise BuildError(f"the '{spec.name}' native module does not import: "
                             f"{check.stderr.strip()[-2000:]}", backend=spec.name)
        (tmp / "module.json").write_text(json.dumps(
            {"module_file": module_file, "module_key": mod_key, "module_inputs": inputs},
            indent=2))


def build_variant(spec: BackendSpec, *, force: bool = False,
                  progress: ProgressCallback | None = None) -> BuiltVariant:
    """Return the built variant for ``spec``, building what the cache lacks.

    Raises ``BuildError`` naming the missing prerequisites (before CMake runs) or the
    failing step and its log.
    """
    lib_dir, mod_dir, lib_key = _paths(spec)
    if not force:
        found = _load_variant(spec, lib_dir, mod_dir)
        if found is not None:
            return found
    missing = list(spec.check_prerequisites())
    if missing:
        raise BuildError(
            f"cannot build the '{spec.name}' backend; missing: "
            + "; ".join(str(m) for m in missing), backend=spec.name)
    with file_lock(lib_dir.with_name(lib_dir.name + ".lock")):
        if force or not (lib_dir / "build.json").is_file():
            _build_libraries(spec, lib_dir, lib_key, force, progress)
        if force or not (mod_dir / "module.json").is_file():
            _compile_module(spec, lib_dir, mod_dir, lib_key)
    found = _load_variant(spec, lib_dir, mod_dir)
    if found is None:  # pragma: no cover - publication is atomic
        raise BuildError(f"the '{spec.name}' build finished but is incomplete",
                         backend=spec.name)
    return found
