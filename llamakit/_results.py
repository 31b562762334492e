"""What generation returns: text, tokens, why it stopped, and how long it took."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._logprobs import TokenLogprob

__all__ = ["FinishReason", "GenerationResult", "TextStream", "Timings"]

FinishReason = Literal["stop", "length", "eog"]


@dataclass(frozen=True)
class Timings:
    """Token counts and wall-clock milliseconds of one generation.

    ``prompt_ms`` covers evaluating the prompt tokens that were not already in the
    context (``prompt_tokens - prompt_tokens_cached``); ``generated_ms`` covers sampling
    and evaluating the new tokens; ``native`` holds llama.cpp's own perf counters.
    """

    prompt_tokens: int
    prompt_tokens_cached: int
    prompt_ms: float
    generated_tokens: int
    generated_ms: float
    total_ms: float
    native: dict[str, float] = field(default_factory=dict)

    @property
    def prompt_tokens_per_s(self) -> float:
        evaluated = self.prompt_tokens - self.prompt_tokens_cached
        return evaluated / (self.prompt_ms / 1000) if self.prompt_ms > 0 else 0.0

    @property
    def generated_tokens_per_s(self) -> float:
        return self.generated_tokens / (self.generated_ms / 1000) if self.generated_ms > 0 else 0.0


@dataclass(frozen=True)
class GenerationResult:
    """The outcome of ``Context.generate``.

    ``tokens`` are the generated ids (not the prompt; an end-of-generation token is not
    included); ``text`` is their text with a matched stop string cut off. ``logprobs``
    holds an entry per generated token when the call asked for ``logprobs``.
    """

    text: str
    tokens: list[int]
    finish_reason: FinishReason
    timings: Timings
    prompt_tokens: list[int]
    seed: int | None
    logprobs: list[TokenLogprob] | None = None


class TextStream(Iterator[str]):
    """Iterator of text pieces from ``Context.stream``; ``result`` is set once exhausted."""

    def __init__(self, pieces: Iterator[str | GenerationResult]) -> None:
        self._pieces = pieces
        self.result: GenerationResult | None = None

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        while True:
            item = next(self._pieces)
            if isinstance(item, GenerationResult):
                self.result = item
                continue
            return item

    def close(self) -> None:
        """Stop generating early (what leaving a ``for`` loop does too)."""
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()
