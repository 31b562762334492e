"""Finding NVIDIA's CUDA toolkit: nvcc, the runtime, cuBLAS and the driver's link library.

ggml-cuda's CMake finds the toolkit by itself, but only tells what is missing deep in a
failed configure, and the module is linked outside CMake: the plugin looks first, names
what is missing, and passes CMake the compiler it found.

Where nvcc is looked for, in order: ``$CUDACXX`` (CMake's own variable), ``$CUDA_HOME``,
``$CUDA_PATH`` and ``$CUDAToolkit_ROOT`` (``bin/nvcc`` below each), ``PATH``,
``/usr/local/cuda/bin``. The toolkit's root is the folder above nvcc's ``bin/``.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from llamakit import Prerequisite

__all__ = ["Toolkit", "find_toolkit", "nvcc_version", "toolkit_problems"]

_ROOT_VARIABLES = ("CUDA_HOME", "CUDA_PATH", "CUDAToolkit_ROOT")
_DEFAULT_ROOT = Path("/usr/local/cuda")
_INSTALL_HINT = ("NVIDIA's CUDA toolkit (https://developer.nvidia.com/cuda-downloads, or "
                 "apt-get install nvidia-cuda-toolkit), or set CUDA_HOME to where it is")


def _multiarch() -> str:
    return f"{platform.machine()}-linux-gnu"


@dataclass(frozen=True)
class Toolkit:
    """What was found of one toolkit (``nvcc`` None: no toolkit at all)."""

    nvcc: Path | None
    root: Path | None
    searched: tuple[str, ...]
    """Where nvcc was looked for, for the message when it is missing."""

    @property
    def include_dirs(self) -> list[Path]:
        if self.root is None:
            return []
        dirs = [self.root / "include",
                self.root / "targets" / f"{platform.machine()}-linux" / "include"]
        return [d for d in dirs if d.is_dir()]

    @property
    def lib_dirs(self) -> list[Path]:
        if self.root is None:
            return []
        dirs = [self.root / "lib64", self.root / "lib",
                self.root / "targets" / f"{platform.machine()}-linux" / "lib",
                self.root / "lib" / _multiarch()]
        unique: list[Path] = []
        for folder in dirs:
            if folder.is_dir() and folder.resolve() not in [u.resolve() for u in unique]:
                unique.append(folder)
        return unique

    def header(self, name: str) -> Path | None:
        for folder in self.include_dirs:
            if (folder / name).is_file():
                return folder / name
        return None

    def library(self, name: str) -> Path | None:
        """``lib<name>.so`` (the link-time name) in the toolkit's library folders."""
        for folder in self.lib_dirs:
            if (folder / f"lib{name}.so").exists():
                return folder / f"lib{name}.so"
        return None

    def driver_link_library(self) -> Path | None:
        """A ``libcuda.so`` to link against: the toolkit's stub, else the system's."""
        for folder in [*(d / "stubs" for d in self.lib_dirs), *_system_lib_dirs()]:
            if (folder / "libcuda.so").exists():
                return folder / "libcuda.so"
        return None


def _system_lib_dirs() -> list[Path]:
    """Where a driver's own ``libcuda.so`` may be: the loader's path, the usual folders."""
    extra = [Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    return [*extra, Path("/usr/lib") / _multiarch(), Path("/usr/lib64"), Path("/usr/lib")]


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_toolkit() -> Toolkit:
    """The toolkit this machine would build with (cheap: file checks only)."""
    searched: list[str] = []
    candidates: list[Path] = []
    compiler = os.environ.get("CUDACXX")
    if compiler:
        searched.append(f"$CUDACXX ({compiler})")
        candidates.append(Path(compiler))
    for variable in _ROOT_VARIABLES:
        value = os.environ.get(variable)
        if value:
            searched.append(f"${variable}/bin ({value}/bin)")
            candidates.append(Path(value) / "bin" / "nvcc")
    searched.append("PATH")
    on_path = shutil.which("nvcc")
    if on_path:
        candidates.append(Path(on_path))
    searched.append(str(_DEFAULT_ROOT / "bin"))
    candidates.append(_DEFAULT_ROOT / "bin" / "nvcc")
    for candidate in candidates:
        if _executable(candidate):
            nvcc = _real_nvcc(candidate.resolve())
            return Toolkit(nvcc=nvcc, root=nvcc.parent.parent, searched=tuple(searched))
    return Toolkit(nvcc=None, root=None, searched=tuple(searched))


@lru_cache(maxsize=16)
def _real_nvcc(nvcc: Path) -> Path:
    """The toolkit's own nvcc behind ``nvcc``, which may be a wrapper script elsewhere
    (``/usr/local/bin/nvcc`` running ``/usr/local/cuda-13.0/bin/nvcc``): a toolkit's
    ``bin/`` has ``nvvm/`` beside it; otherwise nvcc's dry run names its folder."""
    if (nvcc.parent.parent / "nvvm").is_dir():
        return nvcc
    try:
        done = subprocess.run([str(nvcc), "--dryrun", "-v", "-x", "cu", os.devnull, "-c",
                               "-o", os.devnull], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return nvcc
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith("#$ _HERE_="):
            here = Path(line.split("=", 1)[1].strip())
            if _executable(here / "nvcc"):
                return (here / "nvcc").resolve()
    return nvcc


@lru_cache(maxsize=8)
def nvcc_version(nvcc: Path) -> str:
    """nvcc's version lines (part of the build key), or why it does not run."""
    try:
        done = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"does not run: {exc}"
    lines = [line.strip() for line in done.stdout.splitlines()
             if line.lower().startswith(("cuda compilation tools", "build "))]
    return " | ".join(lines) or f"exit {done.returncode}: {done.stdout.strip()[-200:]}"


def toolkit_problems(toolkit: Toolkit) -> list[Prerequisite]:
    """What the build needs from the toolkit and is missing (empty when all is there)."""
    if toolkit.nvcc is None or toolkit.root is None:
        return [Prerequisite(
            "no nvcc (NVIDIA's CUDA compiler; looked in " + ", ".join(toolkit.searched) + ")",
            _INSTALL_HINT)]
    where = f"the CUDA toolkit at {toolkit.root} (nvcc: {toolkit.nvcc})"
    includes = ", ".join(str(d) for d in toolkit.include_dirs) or f"{toolkit.root}/include"
    libs = ", ".join(str(d) for d in toolkit.lib_dirs) or f"{toolkit.root}/lib64"
    missing = []
    version = nvcc_version(toolkit.nvcc)
    if version.startswith(("does not run", "exit ")):
        missing.append(Prerequisite(f"nvcc at {toolkit.nvcc} {version}", _INSTALL_HINT))
    if toolkit.header("cuda_runtime.h") is None:
        missing.append(Prerequisite(
            f"no CUDA runtime headers (cuda_runtime.h) in {where}; looked in {includes}",
            "the toolkit's cuda-cudart-dev package"))
    if toolkit.library("cudart") is None:
        missing.append(Prerequisite(
            f"no CUDA runtime library (libcudart.so) in {where}; looked in {libs}",
            "the toolkit's cuda-cudart-dev package"))
    if toolkit.header("cublas_v2.h") is None:
        missing.append(Prerequisite(
            f"no cuBLAS headers (cublas_v2.h) in {where}; looked in {includes}",
            "the toolkit's libcublas-dev package (NVIDIA's repository), or put cuBLAS's "
            "include/ and lib/ beside the toolkit's"))
    for library in ("cublas", "cublasLt"):
        if toolkit.library(library) is None:
            missing.append(Prerequisite(
                f"no cuBLAS library (lib{library}.so) in {where}; looked in {libs}",
                "the toolkit's libcublas-dev package (NVIDIA's repository)"))
    if toolkit.driver_link_library() is None:
        missing.append(Prerequisite(
            f"no libcuda.so to link against (the driver API; {where} has no lib64/stubs/"
            "libcuda.so and the system has none)", "the toolkit's cuda-driver-dev package"))
    return missing


def link_args(toolkit: Toolkit) -> tuple[str, ...]:
    """Linker arguments for the module: the toolkit's libraries, found at run time through
    an rpath (toolkits rarely sit on the loader's path); the driver's stub only at link
    time (the real libcuda.so.1 comes with the driver)."""
    runtime_dirs: list[Path] = []
    for library in ("cudart", "cublas", "cublasLt"):
        found = toolkit.library(library)
        if found is not None and found.parent not in runtime_dirs:
            runtime_dirs.append(found.parent)
    args = [f"-L{d}" for d in runtime_dirs]
    driver = toolkit.driver_link_library()
    if driver is not None and driver.parent not in runtime_dirs:
        args.append(f"-L{driver.parent}")
    args += [f"-Wl,-rpath,{d}" for d in runtime_dirs]
    return (*args, "-lcublas", "-lcublasLt", "-lcudart", "-lcuda", "-ldl", "-lrt")
