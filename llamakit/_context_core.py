"""``ContextCore``: what every part of a ``Context`` builds on.

``Context`` is assembled from feature classes (generation, chat, batches, embeddings,
state, LoRA), each a subclass of this core, so each one sees the same typed attributes
and none casts ``self``:

- ``model`` and ``_handle`` (the ``ContextHandle``), with the lifecycle of ``Owned``;
- ``_lock``: one call at a time (a reentrant ``ContextGate``: a feature may call
  another; streams hold it only while computing a piece);
- ``_cache``: the ``PromptCache`` of sequence 0, the only writer of the cached prefix;
- the settings a call falls back to (``seed``, ``sampling``, ``max_new_tokens``, ``stop``,
  thread counts) and their resolution (``_sampling``, ``_prompt_tokens``);
- facts (``n_ctx``, ``n_batch``, ``n_ubatch``), llama.cpp's perf counters and ``kv``.

A new feature is a new subclass in its own module, added to ``Context``'s bases; a public
call takes ``_lock`` and changes sequence 0 only through ``_cache``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ._errors import EmptyPromptError
from ._gate import ContextGate
from ._kv import KVCache
from ._native.sampler import detach_backend
from ._overflow import OverflowPolicy, fit_prompt
from ._owned import Owned
from ._prompt_cache import PromptCache
from ._sampling import SamplingParams

if TYPE_CHECKING:
    from ._model import Model
    from ._native.context import ContextHandle
    from ._sampler_chain import SamplerChain

__all__ = ["ContextCore", "Prompt"]

Prompt = str | bytes | Sequence[int]


class ContextCore(Owned):
    """The model, handle, lock, prompt cache and settings of a context."""

    _handle: ContextHandle
    #: ``generate``'s chain of the previous call, kept for the next one with the same
    #: settings (``Generation._take_spare``); freed with the context.
    _spare: tuple[str, SamplerChain] | None = None

    def __init__(self, model: Model, handle: ContextHandle, *, seed: int | None,
                 n_threads: int, n_threads_batch: int,
                 sampling: SamplingParams | None = None, max_new_tokens: int = 256,
                 stop: Sequence[str] = (), deterministic: bool | None = None) -> None:
        self.model = model
        self._handle = handle
        self.seed = seed
        self.n_threads = n_threads
        self.n_threads_batch = n_threads_batch
        self.sampling = sampling or SamplingParams()
        self.max_new_tokens = max_new_tokens
        self.stop = list(stop)
        self._cache = PromptCache(handle)
        self._lock = ContextGate(on_takeover=self._undo_abandoned)
        #: Reuse the prompt cache only where a fresh context would compute the same
        #: (see ``_determinism``); None: whenever a call is greedy or seeded.
        self.deterministic: bool | None = deterministic

    def close(self) -> None:
        """Free it and everything made from it; a second call does nothing."""
        spare, self._spare = self._spare, None
        if spare is not None:
            spare[1].close()
        super().close()

    def _undo_abandoned(self) -> None:
        """A stream was abandoned mid-way (its thread ended): take back the chains it had
        attached for backend sampling, or the next call's outputs would have no logits."""
        handle = self._handle
        if handle.backend_samplers and not handle.closed:
            for seq_id in range(handle.n_seq_max):
                detach_backend(handle, seq_id)

    @property
    def _past(self) -> list[int]:
        """The tokens sequence 0 holds (a copy; for tests and debugging)."""
        return self._cache.tokens

    # -- facts ---------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        self._handle.check_open()
        return self._handle.n_ctx

    @property
    def n_batch(self) -> int:
        self._handle.check_open()
        return self._handle.n_batch

    @property
    def n_ubatch(self) -> int:
        self._handle.check_open()
        return self._handle.n_ubatch

    # -- KV cache and perf -------------------------------------------------------------
    @property
    def kv(self) -> KVCache:
        """Direct control of the KV cache (``clear``, ``seq_rm``, ``seq_cp``, ...)."""
        self._handle.check_open()
        return KVCache(self)

    def reset(self) -> None:
        """Forget every evaluated token (clears the KV cache)."""
        with self._lock:
            self._cache.clear()

    def cancel(self) -> None:
        """Stop a running generate/stream/embeddings call, from any thread.

        llama.cpp stops at its next graph node and the call raises ``AbortedError``; the
        tokens evaluated before stay cached, so the context stays usable. A call that
        starts afterwards is not affected. (Ctrl-C stops a call on the main thread the same
        way, raising ``KeyboardInterrupt``.)
        """
        self._handle.set_abort(True)

    abort = cancel

    def perf(self) -> dict[str, float]:
        """llama.cpp's perf counters since the last reset: load, prompt and generation ms
        and token counts (``t_p_eval_ms``, ``n_p_eval``, ``t_eval_ms``, ``n_eval``, ...)."""
        return self._handle.perf()

    def reset_perf(self) -> None:
        """Zero llama.cpp's perf counters (``generate`` does this at its start)."""
        self._handle.reset_perf()

    # -- what a call falls back to -----------------------------------------------------
    def _prompt_tokens(self, prompt: Prompt, parse_special: bool,
                       on_overflow: OverflowPolicy = "error", n_keep: int = 0,
                       n_ctx: int | None = None) -> list[int]:
        if isinstance(prompt, (str, bytes)):
            tokens = self.model.tokenize(prompt, add_special=True, parse_special=parse_special)
        else:
            tokens = self.model._handle.check_tokens(prompt)
        if not tokens:
            raise EmptyPromptError(
                "the prompt has no tokens (an empty string on a model that adds no BOS, or "
                "an empty token list); give at least one token")
        return fit_prompt(tokens, self.n_ctx if n_ctx is None else n_ctx, on_overflow, n_keep)

    @cached_property
    def _model_sampling(self) -> SamplingParams:
        return SamplingParams.from_metadata(self.model.metadata)

    def _sampling(self, overrides: Mapping[str, Any], where: str = "generate()"
                  ) -> SamplingParams:
        """The call's keywords over the context's settings over the model's GGUF
        recommendations over llamakit's defaults; the seed falls back to the context's."""
        call = SamplingParams.from_kwargs(overrides, model=self.model, where=where)
        params = self._model_sampling.merged(self.sampling).merged(call)
        if params.values.get("seed") is None and self.seed is not None:
            params = params.replace(seed=self.seed)
        return params
