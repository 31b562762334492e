"""The one place llama.cpp's status codes become exceptions."""

from __future__ import annotations

from typing import NoReturn

from .._errors import (
    AbortedError,
    ComputeError,
    DecodeError,
    GrammarError,
    InvalidBatchError,
    KVCacheFullError,
    SamplerError,
)

__all__ = ["DECODE_STATUSES", "SAMPLE_STATUSES", "raise_for_decode", "raise_for_sample"]

# llama.h documents these returns of llama_decode/llama_encode; anything else negative
# is "fatal error" as well (ComputeError). After 1, 2, -2 and -3 llama.cpp has removed the
# failed micro-batch from the KV cache but kept the ones before it: callers reconcile
# their token history with llama_memory_seq_pos_max.
DECODE_STATUSES: dict[int, tuple[type[DecodeError], str]] = {
    1: (KVCacheFullError, "no room in the KV cache for this batch; use a larger n_ctx or "
        "clear the context"),
    2: (AbortedError, "evaluation was cancelled"),
    -1: (InvalidBatchError, "llama.cpp rejected the batch as invalid"),
    -2: (ComputeError, "llama.cpp could not allocate memory for the batch"),
    -3: (ComputeError, "llama.cpp failed while computing the batch"),
}


def _fail(status: int, operation: str) -> NoReturn:
    error, reason = DECODE_STATUSES.get(
        status, (ComputeError, "llama.cpp reported a fatal error"))
    raise error(f"{operation} failed: {reason} (status {status})", status=status)


def raise_for_decode(status: int, operation: str = "llama_decode") -> None:
    """Return quietly for 0; raise the mapped ``DecodeError`` subclass otherwise."""
    if status != 0:
        _fail(status, operation)


# Returns of llamakit's sampling shim (native/lk_sampling.h). LK_SAMPLE_PYTHON (-4) is not
# here: its caller re-raises the Python stage's own exception instead.
SAMPLE_STATUSES: dict[int, tuple[type[SamplerError], str]] = {
    -1: (SamplerError, "the context holds no logits for that output index"),
    -2: (SamplerError, "the sampler chain selected no token"),
    -3: (SamplerError, "a sampler stage failed"),
    -5: (GrammarError, "the grammar forbids the token the chain chose"),
}


def raise_for_sample(status: int, detail: str = "") -> None:
    """Return quietly for 0 or a token id; raise the mapped ``SamplerError`` otherwise,
    with the shim's ``detail`` when it gave one."""
    if status >= 0:
        return
    error, reason = SAMPLE_STATUSES.get(status, (SamplerError, "sampling failed"))
    raise error(f"{detail or reason} (status {status})")
