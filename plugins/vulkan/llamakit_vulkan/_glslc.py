"""Which glslc the Vulkan variant is built with, and ``llamakit vulkan-glslc``.

``[backends.vulkan] glslc``: ``system`` (the default: glslc on the PATH, as CMake finds
it), ``modern`` (the cached shaderc 2025.2 of :mod:`._glslc_build`, built on first need) or
an absolute path. A non-system compiler names itself in the variant's CMake flags and
cache key (the modern one by its build inputs, a path by its content), so variants built
with different compilers never share a cache entry; the system choice adds nothing, which
keeps the keys of variants built before this setting existed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from llamakit import CommandSpec, Prerequisite

from ._features import probe_glslc
from ._glslc_build import build_glslc, cached_glslc, glslc_dir, glslc_inputs, glslc_key
from ._settings import GLSLC_ENV, ambient_vulkan_settings

__all__ = ["glslc_cmake_flags", "glslc_command", "glslc_key_extras", "glslc_prerequisites",
           "prepare_glslc", "selected_glslc"]

_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def selected_glslc() -> tuple[str, Path | None]:
    """``(choice, path)``: path None for the system's glslc. For ``modern`` the path is
    where the cached binary is (or will be once built)."""
    choice = ambient_vulkan_settings().glslc
    if choice == "system":
        return choice, None
    if choice == "modern":
        return choice, glslc_dir() / "bin" / "glslc"
    return "path", Path(choice)


@lru_cache(maxsize=8)
def _content_hash(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # part of the cache key only: a rewritten file is hashed again
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def glslc_key_extras() -> dict[str, str]:
    choice, path = selected_glslc()
    if path is None:
        return {}
    if choice == "modern":
        return {"glslc": f"modern shaderc-2025.2-{glslc_key()}"}
    stat = path.stat()
    return {"glslc": f"path sha256:{_content_hash(str(path), stat.st_size, stat.st_mtime_ns)}"}


def glslc_cmake_flags() -> dict[str, str]:
    _, path = selected_glslc()
    return {} if path is None else {"Vulkan_GLSLC_EXECUTABLE": str(path)}


def glslc_prerequisites() -> list[Prerequisite]:
    choice, path = selected_glslc()
    if choice == "system" and shutil.which("glslc") is None:
        return [Prerequisite("no glslc (the GLSL shader compiler)", "apt-get install glslc")]
    if choice == "modern" and cached_glslc() is None and (
            shutil.which("apt-get") is None or not _KEYRING.exists()):
        return [Prerequisite("glslc = 'modern' is not built and cannot be (building it needs "
                             "apt-get and Debian's archive keyring to fetch the sources)",
                             "llamakit vulkan-glslc build on a Debian machine, then set "
                             "glslc to the binary's path")]
    del path
    return []


def prepare_glslc() -> None:
    """Before the variant's CMake runs: build the modern glslc if it is chosen and absent."""
    if selected_glslc()[0] == "modern" and cached_glslc() is None:
        build_glslc()


def _version(glslc: Path | str) -> str:
    try:
        done = subprocess.run([str(glslc), "--version"], capture_output=True, text=True)
    except OSError as exc:
        return f"does not run: {exc}"
    return done.stdout.splitlines()[0] if done.stdout else f"exit {done.returncode}"


def _status(as_json: bool) -> int:
    choice, selected = selected_glslc()
    system = shutil.which("glslc")
    modern = cached_glslc()
    info_file = glslc_dir() / "bin" / "glslc.json"
    built = json.loads(info_file.read_text()) if modern is not None and info_file.is_file() \
        else {}
    used = selected if selected is not None else (Path(system) if system else None)
    usable = used is not None and used.is_file()
    report = {
        "selected": choice, "glslc": str(used) if used else None,
        "version": _version(used) if usable and used else None,
        "extensions": probe_glslc(used) if usable and used else {},
        "system": system, "modern": str(modern) if modern else None,
        "modern_key": glslc_key(), "modern_folder": str(glslc_dir()),
        "modern_build_seconds": built.get("build_seconds"),
    }
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"selected: {choice} ([backends.vulkan] glslc or {GLSLC_ENV})")
    print(f"glslc:    {report['glslc'] or 'none found'}"
          + (f" ({report['version']})" if report["version"] else
             " (not built yet)" if choice == "modern" else ""))
    for name, ok in report["extensions"].items():
        print(f"    {name:24} {'yes' if ok else 'no'}")
    print(f"system:   {system or 'none on the PATH'}")
    print(f"modern:   {modern or 'not built'} (key {report['modern_key']}"
          + (f", built in {built['build_seconds']:.0f} s" if built else "") + ")")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.action == "build":
        print(build_glslc(jobs=args.jobs, say=lambda text: print(text, flush=True)))
        return 0
    if args.action == "path":
        modern = cached_glslc()
        if modern is None:
            print(f"not built (would be {glslc_dir() / 'bin' / 'glslc'}); "
                  "run `llamakit vulkan-glslc build`")
            return 1
        print(modern)
        return 0
    if args.action == "inputs":
        print(json.dumps(glslc_inputs(), indent=2))
        return 0
    return _status(args.json)


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "The shader compiler of the Vulkan variant. 'build' builds shaderc 2025.2's glslc "
        "once from Debian trixie's source packages (sha256-pinned; about 12 minutes on 2 "
        "cores) into the cache; 'path' prints it; 'status' (the default) says which glslc "
        "the variant is built with and which of ggml-vulkan's shader extensions it takes; "
        "'inputs' prints what keys the build. Select it with [backends.vulkan] glslc = "
        f"\"modern\" (or {GLSLC_ENV}=modern), then `llamakit build vulkan`.")
    parser.add_argument("action", nargs="?", default="status",
                        choices=("status", "build", "path", "inputs"))
    parser.add_argument("--jobs", "-j", type=int, default=None,
                        help="parallel compile jobs for 'build' (default: all cores)")
    parser.add_argument("--json", action="store_true", help="'status' as JSON")


def glslc_command() -> CommandSpec:
    return CommandSpec(name="vulkan-glslc", help="build or show the Vulkan shader compiler",
                       configure=_configure, run=_run)
