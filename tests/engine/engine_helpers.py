"""Helpers of the engine tests."""

from __future__ import annotations

import llamakit


def no_eog(model: llamakit.Model) -> dict[int, float]:
    """A logit bias that bans every end-of-generation token, so a request runs to its limit."""
    eog = [t for t in range(model.info.n_vocab) if model._handle.is_eog(t)]
    return {t: float("-inf") for t in eog}


def reference(model: llamakit.Model, prompt: str | list[int], n: int, **kwargs: object
              ) -> llamakit.GenerationResult:
    """Greedy ``Context.generate`` on a fresh context."""
    with model.new_context(n_ctx=256, n_threads=2) as ctx:
        return ctx.generate(prompt, max_new_tokens=n, temperature=0, **kwargs)  # type: ignore[arg-type]
