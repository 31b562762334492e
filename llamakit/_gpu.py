"""Process-level facts: GPU support of the selected backend."""

from __future__ import annotations

from ._backends import resolve_backend

__all__ = ["supports_gpu"]


def supports_gpu(backend: str | None = None) -> bool:
    """Whether the chosen backend (default: what ``auto`` picks) can offload to a GPU."""
    return resolve_backend(backend).supports_gpu_offload()
