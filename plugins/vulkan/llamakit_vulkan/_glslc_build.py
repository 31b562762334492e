"""A modern glslc, built once from Debian trixie's source packages and cached by its inputs.

Bookworm's glslc (shaderc 2023.2) lacks ``GL_KHR_cooperative_matrix``,
``GL_NV_cooperative_matrix2`` and ``GL_EXT_integer_dot_product``: llama.cpp's Vulkan build
then compiles no matrix-core shaders. Trixie's binary needs glibc 2.38, and no registry we
can use ships a newer one, so this builds shaderc 2025.2's glslc with glslang 15.1.0,
SPIRV-Tools 2025.1 and SPIRV-Headers 1.4.309 from their upstream tarballs as Debian
distributes them (``apt-get source`` with a private apt state: the system's sources are
not touched). Each tarball is checked against a pinned sha256 (the one in trixie's signed
``Sources`` index) before it is unpacked. The C++ runtime is linked statically, so the
binary runs on any x86-64 glibc >= 2.36 (Ubuntu 24.04 included) and can be carried.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llamakit import BuildError
from llamakit._build.cache import atomic_directory, cache_dir, file_lock, hash_json
from llamakit._build.variant import tool_path

__all__ = ["CMAKE_FLAGS", "SOURCES", "SourcePackage", "build_glslc", "cached_glslc",
           "fetch_sources", "glslc_dir", "glslc_inputs", "glslc_key", "verify_source"]

logger = logging.getLogger("llamakit.build")

_SUITE = "trixie"
_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# Bumped when the recipe below changes in a way the inputs do not show.
_RECIPE = 1


@dataclass(frozen=True)
class SourcePackage:
    """One Debian source package: the upstream tarball we build from and its sha256."""

    name: str
    """Debian's source package name; also the folder under ``src/``."""
    version: str
    tarball: str
    sha256: str
    size: int


SOURCES = (
    SourcePackage("spirv-headers", "1.6.1+1.4.309.0-1", "spirv-headers_1.6.1+1.4.309.0.orig.tar.gz",
                  "64ea06bf123c5c063a6be01dd45adec6a30cc0862000781ca18f9104693b722c", 528173),
    SourcePackage("spirv-tools", "2025.1~rc1-1", "spirv-tools_2025.1~rc1.orig.tar.gz",
                  "6895160d5a842552eda6412440747cbadddd47005957bc43bb03926162686777", 3244258),
    SourcePackage("glslang", "15.1.0+1.4.309.0-1", "glslang_15.1.0+1.4.309.0.orig.tar.gz",
                  "180f17ea51e6b71bf57b9e0fea78ba3ecd76e3ec8e4c91f0771b922eb22bf4b2", 3786512),
    SourcePackage("shaderc", "2025.2-1", "shaderc_2025.2.orig.tar.gz",
                  "3fddc13bbb87411c6f7b8f447e87c1637933450087e70fc21da650041f4e0132", 228308),
)

CMAKE_FLAGS = {
    "CMAKE_BUILD_TYPE": "Release",
    "SHADERC_SKIP_TESTS": "ON",
    "SHADERC_SKIP_EXAMPLES": "ON",
    "SHADERC_SKIP_COPYRIGHT_CHECK": "ON",
    # SHADERC_SKIP_INSTALL=ON breaks CMake's generate step (glslang's export set then needs
    # SPIRV-Tools' targets, which are left out of any); nothing is installed either way.
    "SPIRV_SKIP_TESTS": "ON",
    "SPIRV_SKIP_EXECUTABLES": "ON",
    "SPIRV_WERROR": "OFF",
    "ENABLE_GLSLANG_BINARIES": "OFF",
    "GLSLANG_TESTS": "OFF",
    # The C++ runtime inside the binary: glibc is the only shared dependency left, and the
    # build machine's (bookworm, 2.36) is older than the GPU machine's.
    "CMAKE_EXE_LINKER_FLAGS": "-static-libstdc++ -static-libgcc",
}
_TARGET = "glslc_exe"


def _compiler() -> str:
    from llamakit._build.variant import _compiler_identity  # one definition of "the compiler"

    return _compiler_identity()


def glslc_inputs() -> dict[str, object]:
    """Everything that shapes the binary; its hash names the cache folder."""
    return {"recipe": _RECIPE,
            "sources": {s.name: [s.version, s.tarball, s.sha256] for s in SOURCES},
            "cmake_flags": CMAKE_FLAGS, "target": _TARGET, "compiler": _compiler(),
            "platform": [sys.platform, platform.machine()]}


def glslc_key() -> str:
    return hash_json(glslc_inputs())[:16]


def glslc_dir() -> Path:
    """The cache folder of the current inputs (``bin/glslc`` and ``glslc.json`` when built)."""
    return cache_dir() / "glslc" / f"shaderc-2025.2-{glslc_key()}"


def cached_glslc() -> Path | None:
    """The built binary for the current inputs, or None; never builds."""
    binary = glslc_dir() / "bin" / "glslc"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def verify_source(path: Path, package: SourcePackage) -> None:
    """Refuse a tarball whose sha256 is not the pinned one (and delete it, so that a later
    fetch downloads it again instead of meeting the same bad file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != package.sha256:
        path.unlink(missing_ok=True)
        raise BuildError(f"{path.name} has sha256 {digest.hexdigest()}, expected "
                         f"{package.sha256} (Debian {_SUITE}'s {package.name} "
                         f"{package.version}); refusing to build from it", backend="vulkan")


def _apt_options(state: Path) -> list[str]:
    for sub in ("lists/partial", "cache/archives/partial", "etc/sources.list.d", "prefs"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "etc" / "sources.list").write_text(
        f"deb-src [signed-by={_KEYRING}] http://deb.debian.org/debian {_SUITE} main\n")
    return [f"-oDir::State::Lists={state / 'lists'}",
            f"-oDir::Etc::SourceList={state / 'etc' / 'sources.list'}",
            f"-oDir::Etc::SourceParts={state / 'etc' / 'sources.list.d'}",
            f"-oDir::Etc::PreferencesParts={state / 'prefs'}", f"-oDir::Cache={state / 'cache'}"]


def fetch_sources(downloads: Path) -> dict[str, Path]:
    """The verified upstream tarballs, fetched with ``apt-get source --download-only`` when
    not already there. apt checks each file against trixie's signed index; we check the
    pinned sha256 on top, so a changed archive cannot change what we build."""
    downloads.mkdir(parents=True, exist_ok=True)
    missing = [s for s in SOURCES if not (downloads / s.tarball).is_file()]
    if missing:
        if shutil.which("apt-get") is None or not _KEYRING.exists():
            raise BuildError("building glslc needs apt-get and Debian's archive keyring "
                             f"({_KEYRING}) to fetch the sources", backend="vulkan")
        options = _apt_options(downloads.parent / "apt")
        done = subprocess.run(["apt-get", *options, "update"], capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"apt-get update (private state) failed: {done.stderr[-1500:]}",
                             backend="vulkan")
        # The .dsc and Debian's packaging files are fetched too but not used (we build the
        # upstream tarballs, unpatched); a mirror that lacks them makes apt exit non-zero,
        # which is harmless when every tarball arrived and verifies.
        done = subprocess.run(["apt-get", *options, "source", "--download-only",
                               *(f"{s.name}={s.version}" for s in missing)],
                              cwd=downloads, capture_output=True, text=True)
        absent = [s.tarball for s in missing if not (downloads / s.tarball).is_file()]
        if absent:
            raise BuildError(f"apt-get source did not fetch {', '.join(absent)}: "
                             f"{done.stderr.strip()[-1500:]}", backend="vulkan")
    for package in SOURCES:
        verify_source(downloads / package.tarball, package)
    return {s.name: downloads / s.tarball for s in SOURCES}


def _unpack(tarball: Path, target: Path) -> None:
    """Unpack a tarball's single top-level folder as ``target``."""
    with atomic_directory(target) as tmp:
        with tarfile.open(tarball) as archive:
            archive.extractall(tmp, filter="data")
        tops = list(tmp.iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise BuildError(f"{tarball.name}: expected one top-level folder", backend="vulkan")
        for item in tops[0].iterdir():
            item.rename(tmp / item.name)
        tops[0].rmdir()


def _run(command: list[str], log: Path) -> None:
    with open(log, "ab") as sink:
        sink.write(b"$ " + " ".join(command).encode() + b"\n")
        sink.flush()
        code = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise BuildError(f"building glslc failed (exit {code}); full log: {log}\n{tail}",
                         backend="vulkan", log_path=log)


def build_glslc(*, jobs: int | None = None,
                say: Callable[[str], None] = logger.warning) -> Path:
    """Build (once per set of inputs) and return the modern glslc. Minutes: 688 s on 2 busy
    cores (``nice``). Two processes asking at once serialise on the key's lock."""
    cached = cached_glslc()
    if cached is not None:
        return cached
    folder = glslc_dir()
    with file_lock(folder.with_name(folder.name + ".lock")):
        cached = cached_glslc()
        if cached is not None:
            return cached
        cmake, ninja = tool_path("cmake"), tool_path("ninja")
        if cmake is None or ninja is None:
            raise BuildError("building glslc needs cmake and ninja: pip install cmake ninja",
                             backend="vulkan")
        started = time.monotonic()
        tarballs = fetch_sources(cache_dir() / "glslc" / "downloads")
        src = folder / "src"
        for name, tarball in tarballs.items():
            if not (src / name).is_dir():
                _unpack(tarball, src / name)
        build = folder / "build"
        build.mkdir(parents=True, exist_ok=True)
        log = folder / "build.log"
        say(f"building glslc (shaderc 2025.2) into {folder}; log: {log}")
        deps = {"SHADERC_SPIRV_HEADERS_DIR": src / "spirv-headers",
                "SHADERC_SPIRV_TOOLS_DIR": src / "spirv-tools",
                "SHADERC_GLSLANG_DIR": src / "glslang"}
        _run([cmake, "-S", str(src / "shaderc"), "-B", str(build), "-G", "Ninja",
              f"-DCMAKE_MAKE_PROGRAM={ninja}", *(f"-D{k}={v}" for k, v in CMAKE_FLAGS.items()),
              *(f"-D{k}={v}" for k, v in deps.items())], log)
        _run([ninja, "-C", str(build), "-j", str(jobs or os.cpu_count() or 2), _TARGET], log)
        built = build / "glslc" / "glslc"
        version = subprocess.run([str(built), "--version"], capture_output=True, text=True)
        if version.returncode != 0:
            raise BuildError(f"the built glslc does not run: {version.stderr}",
                             backend="vulkan", log_path=log)
        with atomic_directory(folder / "bin") as tmp:
            shutil.copy2(built, tmp / "glslc")
            (tmp / "glslc.json").write_text(json.dumps({
                "inputs": glslc_inputs(), "version": version.stdout.strip(),
                "build_seconds": round(time.monotonic() - started, 1)}, indent=2))
        say(f"built glslc in {time.monotonic() - started:.0f} s: {folder / 'bin' / 'glslc'}")
        return folder / "bin" / "glslc"
