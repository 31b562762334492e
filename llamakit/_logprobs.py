"""Log-probabilities of generated tokens (``logprobs=`` of ``generate``/``stream``/``chat``).

Which distribution: by default the **model's** distribution, the log-softmax of the raw
logits before any sampler (penalties, temperature, top-k, grammar, ...) touched them: what
OpenAI's API reports and what does not depend on the sampling settings.
``post_sampling_probs=True`` reports instead the distribution the sampler chain drew the
token from: the softmax over the candidates its stages left, with their logits after
temperature and the other stages (llama-server's ``post_sampling_probs``). There, fewer than
``logprobs`` alternatives may exist (top-k, top-p and min-p cut candidates); a greedy chain
keeps every candidate, so it reports the model's distribution. llamakit applies a grammar
only when the unconstrained choice breaks it (as llama.cpp's common sampler does): when the
first choice was allowed, the post-sampling candidates are those of that unconstrained pass.

The values are computed in the handle layer (``_native/logits.py``, over
``native/lk_logprobs.cpp``); this module holds what they are reported as.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from ._errors import ConfigError

__all__ = ["MAX_LOGPROBS", "StreamPiece", "TokenLogprob", "TopLogprob", "check_logprobs"]

#: OpenAI's API allows at most 20 alternatives per token (``top_logprobs``).
MAX_LOGPROBS = 20


class TopLogprob(NamedTuple):
    """One alternative for a position: its id, its text and its log-probability."""

    token: int
    text: str
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token with its log-probability and the best alternatives (best first;
    the token itself is among them when it ranks in the top ``logprobs``). ``bytes`` is
    the token's raw text, which may be part of a multi-byte character."""

    token: int
    text: str
    bytes: bytes
    logprob: float
    top_logprobs: tuple[TopLogprob, ...] = ()

    def to_openai(self) -> dict[str, Any]:
        """This entry in the shape of OpenAI's ``choices[].logprobs.content[]``."""
        return {"token": self.text, "logprob": self.logprob, "bytes": list(self.bytes),
                "top_logprobs": [{"token": t.text, "logprob": t.logprob,
                                  "bytes": list(t.text.encode())}
                                 for t in self.top_logprobs]}


class StreamPiece(str):
    """A text piece of ``Context.stream`` when ``logprobs`` was asked for: an ordinary
    ``str`` whose ``logprobs`` are the entries of the tokens whose text completed in it
    (a piece held back for a possible stop string carries its tokens once released)."""

    logprobs: tuple[TokenLogprob, ...]

    def __new__(cls, text: str, logprobs: tuple[TokenLogprob, ...]) -> StreamPiece:
        piece = super().__new__(cls, text)
        piece.logprobs = logprobs
        return piece


def check_logprobs(logprobs: Any, post_sampling_probs: Any) -> int | None:
    """``logprobs`` validated: None, or 0..20 alternatives."""
    if not isinstance(post_sampling_probs, bool):
        raise ConfigError(f"post_sampling_probs must be True or False, got "
                          f"{post_sampling_probs!r}", key="post_sampling_probs")
    if logprobs is None:
        if post_sampling_probs:
            raise ConfigError("post_sampling_probs=True needs logprobs (0..20)",
                              key="post_sampling_probs")
        return None
    if isinstance(logprobs, bool) or not isinstance(logprobs, int) \
            or not 0 <= logprobs <= MAX_LOGPROBS:
        raise ConfigError(f"logprobs must be None or an integer from 0 to {MAX_LOGPROBS} "
                          f"(the alternatives reported per token, as in OpenAI's API), got "
                          f"{logprobs!r}", key="logprobs")
    return logprobs
