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
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .._errors import BuildError, SourceChecksumError
from .cache import atomic_directory, cache_dir, file_lock, hash_files

__all__ = [
    "LlamaCppSource",
    "data_path",
    "load_pin",
    "materialize",
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
        result = subprocess.run(["patch", "-p1", "--batch", "-i", str(patch)], cwd=tree,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"patch {name} does not apply to llama.cpp: {result.stdout}")


def materialize(dest: Path | None = None) -> Path:
    """Download, verify and unpack the pinned llama.cpp tree; return its path.

    Idempotent: a complete tree (marked by ``.llamakit-source.json``) is reused.
    """
    pin = load_pin()
    if dest is None:
        dest = cache_dir() / "sources" / f"llama.cpp-{pin['commit'][:12]}"
    marker = dest / _MARKER
    if marker.exists():
        return dest
    with file_lock(dest.with_name(dest.name + ".lock")):
        if marker.exists():
            return dest
        archive = _download_artifact(pin, cache_dir() / "downloads")
        with atomic_directory(dest) as tmp:
            _extract(archive, pin["artifact"]["subdir"], tmp)
            _apply_patches(tmp, pin.get("patches", []))
            (tmp / _MARKER).write_text(json.dumps(
                {"commit": pin["commit"], "sha256": pin["artifact"]["sha256"],
                 "patches": pin.get("patches", [])}, indent=2))
    logger.info("llama.cpp %s materialised at %s", pin["commit"][:12], dest)
    return dest


def _patches_identity(pin: dict[str, Any]) -> str:
    patches = [data_path(f"llama.cpp/patches/{name}") for name in pin.get("patches", [])]
    return hash_files(patches)


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


def source_identity() -> str:
    """What keys builds: the pin (commit, artifact checksum, patches) or a local tree's content.

    Computed without downloading anything, so a cached build is found offline.
    """
    local = _local_dir()
    if local is not None:
        return _local_identity(local)
    pin = load_pin()
    return f"pin:{pin['commit']}:{pin['artifact']['sha256']}:{_patches_identity(pin)}"


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
