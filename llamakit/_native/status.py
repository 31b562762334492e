"""The one place llama.cpp's status codes become exceptions."""

from __future__ import annotations

from typing import NoReturn

from .._errors import AbortedError, DecodeError

__all__ = ["DECODE_STATUSES", "raise_for_decode"]

# llama.h documents these returns of llama_decode/llama_encode; anything else negative
# is "fatal error" as well.
DECODE_STATUSES: dict[int, tuple[type[DecodeError], str]] = {
    1: (DecodeError, "no room in the KV cache for this batch; use a larger n_ctx or "
        "clear the context"),
    2: (AbortedError, "evaluation was aborted"),
    -1: (DecodeError, "llama.cpp rejected the batch as invalid"),
    -2: (DecodeError, "llama.cpp could not allocate memory for the batch"),
    -3: (DecodeError, "llama.cpp failed while computing the batch"),
}


def _fail(status: int, operation: str) -> NoReturn:
    error, reason = DECODE_STATUSES.get(
        status, (DecodeError, "llama.cpp reported a fatal error"))
    raise error(f"{operation} failed: {reason} (status {status})", status=status)


def raise_for_decode(status: int, operation: str = "llama_decode") -> None:
    """Return quietly for 0; raise the mapped ``DecodeError`` subclass otherwise."""
    if status != 0:
        _fail(status, operation)
