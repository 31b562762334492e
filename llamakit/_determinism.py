"""Deterministic prompt reuse: the same call gives the same tokens as a fresh context.

Reusing the cached prefix of an earlier call changes *how* the rest of a prompt is
evaluated: a fresh context decodes a prompt in chunks of ``n_batch`` tokens from position
0 (llama.cpp splits each into micro-batches of ``n_ubatch``), a reused one starts its
first chunk wherever the shared prefix ends, and the cached tokens themselves may have
been decoded one at a time as generated text. Kernels whose rounding depends on how many
rows a matrix product has (quantized repacked kernels, GPU kernels picked by batch size)
then give slightly different logits, which can flip a greedy choice or a seeded draw.

In deterministic mode a context reuses only the *aligned* part of its cache: the
leading whole ``n_batch`` chunks that an earlier prompt evaluation decoded exactly as a
fresh context decodes them (same chunk boundaries from position 0, same token ids). The
rest of the prompt is evaluated again with a fresh context's boundaries, so every
logit is computed by the same sequence of kernel calls as in a fresh context. Long shared
prompts (system prompts longer than ``n_batch``) keep most of their reuse; short ones are
evaluated again in full.
"""

from __future__ import annotations

__all__ = ["aligned_after", "reusable_prefix", "wants_exact"]


def wants_exact(setting: bool | None, *, greedy: bool, seeded: bool) -> bool:
    """Whether a call runs in deterministic mode: the context's ``deterministic`` setting,
    or, left unset, whenever the output is meant to be reproducible (greedy sampling or
    an explicit seed)."""
    if setting is not None:
        return setting
    return greedy or seeded


def reusable_prefix(common: int, aligned: int, n_batch: int, exact: bool) -> int:
    """How much of a shared prefix of ``common`` tokens to keep; ``aligned`` is the length
    of the cached prefix known to be decoded in fresh-context chunks."""
    if not exact:
        return common
    kept = min(common, aligned)
    return kept - kept % n_batch


def aligned_after(start: int, n_tokens: int, aligned: int, n_batch: int) -> int:
    """The aligned length once tokens ``start..n_tokens`` were decoded in chunks of
    ``n_batch`` from ``start``: whole chunks extend it when ``start`` is itself an
    aligned boundary, otherwise only the aligned part before ``start`` stays."""
    if start % n_batch == 0 and start <= aligned:
        return start + (n_tokens - start) // n_batch * n_batch
    kept = min(aligned, start)
    return kept - kept % n_batch
