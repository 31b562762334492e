"""``no_repeat_ngram``: a Python sampler stage that never lets an n-gram occur twice.

The text so far (the prompt, then each generated token, as ``accept`` sees them) is
remembered as n-grams; before each pick, every candidate that would complete an n-gram
already seen gets a logit of ``-inf``. ``n=1`` bans every token seen; ``n=3`` (the default)
bans repeating any three-token sequence, which stops the loops small models fall into.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from llamakit import Candidates

__all__ = ["NoRepeatNgram", "no_repeat_ngram"]


class NoRepeatNgram:
    """Bans the tokens that would repeat an n-gram of the text so far.

    When every candidate would repeat one, the candidates are left as they are (a sampler
    must leave at least one finite logit for the stage that picks the token).
    """

    name = "no_repeat_ngram"

    def __init__(self, n: int = 3) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        self.n = n
        self._recent: deque[int] = deque(maxlen=n - 1)
        self._seen: dict[tuple[int, ...], set[int]] = {}

    def accept(self, token: int) -> None:
        prefix = tuple(self._recent)
        if len(prefix) == self.n - 1:
            self._seen.setdefault(prefix, set()).add(int(token))
        if self.n > 1:
            self._recent.append(int(token))

    def banned(self) -> set[int]:
        """The tokens that would complete an n-gram already seen."""
        if len(self._recent) < self.n - 1:
            return set()
        return self._seen.get(tuple(self._recent), set())

    def apply(self, candidates: Candidates) -> None:
        banned = self.banned()
        if not banned:
            return
        hit = np.isin(candidates.ids, np.fromiter(banned, dtype=np.int32, count=len(banned)))
        if hit.all():
            return
        candidates.logits[hit] = -np.inf

    def reset(self) -> None:
        self._recent.clear()
        self._seen.clear()

    def clone(self) -> NoRepeatNgram:
        copy = NoRepeatNgram(self.n)
        copy._recent.extend(self._recent)
        copy._seen = {prefix: set(tokens) for prefix, tokens in self._seen.items()}
        return copy


def no_repeat_ngram(model: Any, n: int = 3) -> NoRepeatNgram:
    """The ``SamplerSpec`` factory: ``model`` is the llamakit.Model the chain samples for
    (unused: the stage works on token ids alone); ``n`` comes from the stage's parameters."""
    return NoRepeatNgram(n)
