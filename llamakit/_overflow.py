"""What generation does when the context is full: ``on_overflow``.

- ``"error"`` (default): a prompt longer than ``n_ctx`` raises ``ContextOverflowError``;
  a generation that fills the context raises it too, carrying what was generated so far
  as ``error.result``.
- ``"truncate"``: a too-long prompt keeps its first ``n_keep`` tokens and as many of its
  last ones as fit; a generation that fills the context ends with ``"length"``.
- ``"shift"``: llama.cpp's context shift — keep the first ``n_keep`` tokens, drop half of
  the rest from the KV cache, move the remainder down and go on generating. A too-long
  prompt is truncated as with ``"truncate"``.
"""

from __future__ import annotations

from typing import Literal

from ._errors import ConfigError, ContextOverflowError

__all__ = ["OVERFLOW_POLICIES", "OverflowPolicy", "check_policy", "fit_prompt", "shift_plan"]

OverflowPolicy = Literal["error", "truncate", "shift"]
OVERFLOW_POLICIES = ("error", "truncate", "shift")


def check_policy(on_overflow: object, n_keep: object, n_ctx: int) -> tuple[OverflowPolicy, int]:
    if on_overflow not in OVERFLOW_POLICIES:
        raise ConfigError(f"on_overflow must be one of {OVERFLOW_POLICIES}, got {on_overflow!r}",
                          key="on_overflow")
    if isinstance(n_keep, bool) or not isinstance(n_keep, int) or not 0 <= n_keep < n_ctx - 1:
        raise ConfigError(f"n_keep must be an integer in 0..{n_ctx - 2} (n_ctx={n_ctx}), "
                          f"got {n_keep!r}", key="n_keep")
    return on_overflow, n_keep  # type: ignore[return-value]


def fit_prompt(tokens: list[int], n_ctx: int, policy: OverflowPolicy, n_keep: int) -> list[int]:
    """The prompt as it will be evaluated: unchanged when it leaves room to generate."""
    if policy == "error":
        if len(tokens) > n_ctx:
            raise ContextOverflowError(len(tokens), n_ctx)
        return tokens
    if len(tokens) <= n_ctx - 1:
        return tokens
    # Keep the head (system prompt, BOS) and the most recent tokens; leave one free cell.
    tail = n_ctx - 1 - n_keep
    return tokens[:n_keep] + tokens[len(tokens) - tail:]


def shift_plan(n_past: int, n_keep: int) -> int:
    """How many tokens a context shift discards (half of those after ``n_keep``)."""
    return max(1, (n_past - n_keep) // 2)
