"""The fingerprint of each loaded model's file, taken while the file is there.

A model stays usable (mapped or read into memory) after its file is deleted or replaced,
and the states saved from its contexts must still name the file they belong to; so the
fingerprint is taken when the model loads, and kept as long as its handle lives.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from contextlib import suppress
from functools import lru_cache
from typing import Any

__all__ = ["file_fingerprint", "model_fingerprint", "remember_model_file"]

_FINGERPRINTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


@lru_cache(maxsize=16)
def file_fingerprint(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of the size and the first and last 64 KiB of the file."""
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 16))
        handle.seek(max(0, size - (1 << 16)))
        digest.update(handle.read(1 << 16))
    return digest.hexdigest()


def remember_model_file(key: Any, path: str | os.PathLike[str]) -> None:
    """Fingerprint the file at ``path`` now, for the model whose handle is ``key``."""
    with suppress(OSError):
        stat = os.stat(path)
        _FINGERPRINTS[key] = file_fingerprint(os.fspath(path), stat.st_size, stat.st_mtime_ns)


def model_fingerprint(key: Any, path: str | os.PathLike[str]) -> str | None:
    """The fingerprint remembered for ``key`` (taken now if it was not yet), None when the
    file was never readable."""
    if key not in _FINGERPRINTS:
        remember_model_file(key, path)
    return _FINGERPRINTS.get(key)
