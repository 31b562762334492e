"""Turning sampling keywords into a validated llama.cpp sampler chain."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any

from ._errors import SamplerError

__all__ = ["SamplingParams", "random_seed"]

_SEED_MAX = 0xFFFFFFFE  # 0xFFFFFFFF is llama.cpp's "pick a random seed"


def random_seed() -> int:
    return secrets.randbelow(_SEED_MAX + 1)


def check_seed(seed: Any, name: str = "seed") -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _SEED_MAX:
        raise SamplerError(f"{name} must be an integer in 0..{_SEED_MAX} or None, got {seed!r}")
    return seed


def _number(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SamplerError(f"{name} must be a finite number, got {value!r}")
    if value < low or value > high or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise SamplerError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SamplingParams:
    """The basic sampling keywords, validated on construction."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    seed: int | None = None

    def __post_init__(self) -> None:
        _number("temperature", self.temperature, 0.0, math.inf)
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise SamplerError(f"top_k must be an integer >= 0 (0 disables it), "
                               f"got {self.top_k!r}")
        _number("top_p", self.top_p, 0.0, 1.0)
        _number("min_p", self.min_p, 0.0, 1.0)
        check_seed(self.seed)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def stages(self, seed: int) -> list[tuple[str, dict[str, Any]]]:
        """The chain in llama.cpp's usual order; ``temperature == 0`` is plain greedy."""
        if self.greedy:
            return [("greedy", {})]
        stages: list[tuple[str, dict[str, Any]]] = []
        if self.top_k > 0:
            stages.append(("top_k", {"k": self.top_k}))
        if self.top_p < 1.0:
            stages.append(("top_p", {"p": self.top_p}))
        if self.min_p > 0.0:
            stages.append(("min_p", {"p": self.min_p}))
        stages.append(("temp", {"t": self.temperature}))
        stages.append(("dist", {"seed": seed}))
        return stages
