"""Log-probabilities in OpenAI's two shapes.

Chat completions: ``choices[].logprobs = {"content": [{"token", "logprob", "bytes",
"top_logprobs": [{"token", "logprob", "bytes"}]}]}``. Legacy completions: ``{"tokens",
"token_logprobs", "top_logprobs": [{text: logprob}], "text_offset"}``, where each
``top_logprobs`` map holds the ``logprobs`` best alternatives plus the chosen token (so up
to ``logprobs + 1`` keys, as OpenAI documents). The entries are those of the raw generated
tokens (``GenerationResult.logprobs``): for a tool-call or reasoning reply they cover the
markup and the thinking too, not only ``content``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llamakit._logprobs import TokenLogprob

__all__ = ["TextOffsets", "chat_logprobs", "completion_logprobs", "piece_entries"]


def piece_entries(piece: str) -> tuple[TokenLogprob, ...]:
    """The entries a streamed piece carries (none for a plain ``str``)."""
    return tuple(getattr(piece, "logprobs", ()))


def chat_logprobs(entries: Sequence[TokenLogprob] | None) -> dict[str, Any] | None:
    """A chat choice's ``logprobs`` (``None`` when they were not asked for)."""
    if entries is None:
        return None
    return {"content": [entry.to_openai() for entry in entries]}


class TextOffsets:
    """Character offsets of the tokens of one completion, counted across streamed chunks
    (``start``: the echoed prompt's length, which comes first in the text)."""

    def __init__(self, start: int = 0) -> None:
        self.at = start

    def take(self, entries: Sequence[TokenLogprob]) -> list[int]:
        offsets = []
        for entry in entries:
            offsets.append(self.at)
            self.at += len(entry.text)
        return offsets


def completion_logprobs(entries: Sequence[TokenLogprob] | None, offsets: TextOffsets
                        ) -> dict[str, Any] | None:
    """A legacy completion choice's ``logprobs`` for ``entries``."""
    if entries is None:
        return None
    tops: list[dict[str, float]] = []
    for entry in entries:
        top = {t.text: t.logprob for t in entry.top_logprobs}
        top.setdefault(entry.text, entry.logprob)
        tops.append(top)
    return {"tokens": [e.text for e in entries],
            "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": tops, "text_offset": offsets.take(entries)}
