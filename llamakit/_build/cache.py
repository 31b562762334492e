"""The build cache: where it lives, locking, atomic publication and input hashing."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_directory",
    "cache_dir",
    "file_lock",
    "hash_files",
    "hash_json",
]


def cache_dir() -> Path:
    """Root of llamakit's cache: ``$LLAMAKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/llamakit``."""
    explicit = os.environ.get("LLAMAKIT_CACHE_DIR")
    if explicit:
        root = Path(explicit).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "llamakit"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if needed) for the block.

    Two processes building the same key serialise here; the second finds the finished
    build when it gets the lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory that becomes ``final`` only if the block succeeds.

    A build interrupted half-way leaves only a ``.tmp-*`` folder behind, never a
    half-written ``final``; callers hold the key's lock, so ``final`` cannot appear
    under them.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def hash_json(value: Mapping[str, Any]) -> str:
    """sha256 of a JSON document with sorted keys: the form every cache key takes."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def hash_files(paths: Iterable[Path], *, root: Path | None = None) -> str:
    """sha256 over the names (relative to ``root``) and contents of ``paths``, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        name = str(path.relative_to(root)) if root is not None else path.name
        digest.update(name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()
