"""``Context``: evaluation state over a model; generation, streaming, embeddings."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._batch import BatchMixin
from ._chat.mixin import ChatMixin
from ._context_knobs import default_threads
from ._context_text import TextAssembler, stop_strings
from ._control_vector import ControlVectorMixin
from ._embeddings import POOLING as _POOLING
from ._embeddings import POOLING_NAMES as _POOLING_NAMES
from ._embeddings import EmbeddingsMixin
from ._errors import (
    ConfigError,
    ContextOverflowError,
    EmptyPromptError,
    SamplerError,
)
from ._native import memory
from ._native.context import ContextHandle
from ._overflow import OverflowPolicy, check_policy, fit_prompt, shift_plan
from ._positions import learned_positions
from ._rerank import RerankMixin
from ._results import FinishReason, GenerationResult, TextStream, Timings
from ._sampler_chain import SamplerChain
from ._sampling import SamplingParams, check_seed, random_seed
from ._state import ContextExtras

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._model import Model
    from ._sampling import SamplingKwargs

__all__ = ["Context"]

_MAX_SEQUENCES = 256  # LLAMA_MAX_SEQ

Prompt = str | bytes | Sequence[int]


def _positive(name: str, value: Any) -> int:
    # llama.cpp keeps these in (u)int32 fields: a larger value would be an OverflowError
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        raise ConfigError(f"{name} must be a positive integer below 2**31, got {value!r}",
                          key=name)
    return value


class Context(ChatMixin, ContextExtras, EmbeddingsMixin, BatchMixin, ControlVectorMixin,
              RerankMixin):
    """Evaluation state (KV cache, threads, batch sizes) over a ``Model``.

    Made by ``Model.new_context()``. One context serves one thread at a time: calls from
    a second thread wait for the first to finish. Consecutive ``generate`` calls reuse
    the part of the KV cache that the new prompt shares with what was evaluated before.
    """

    def __init__(self, model: Model, handle: ContextHandle, *, seed: int | None,
                 n_threads: int, n_threads_batch: int,
                 sampling: SamplingParams | None = None, max_new_tokens: int = 256,
                 stop: Sequence[str] = ()) -> None:
        self.model = model
        self._handle = handle
        self.seed = seed
        self.n_threads = n_threads
        self.n_threads_batch = n_threads_batch
        self.sampling = sampling or SamplingParams()
        self.max_new_tokens = max_new_tokens
        self.stop = list(stop)
        self._past: list[int] = []
        self._past_epoch = handle.memory_epoch
        self._lock = threading.RLock()

    @classmethod
    def _create(cls, model: Model, *, n_ctx: int | None, n_batch: int, n_ubatch: int,
                n_threads: int | None, n_threads_batch: int | None, embeddings: bool,
                seed: int | None, pooling: str | None, n_seq_max: int = 1,
                kv_unified: bool | None = None,
                knobs: Mapping[str, Any] | None = None) -> Context:
        info = model.info
        if n_ctx is None:
            n_ctx = min(info.n_ctx_train, 4096) if info.n_ctx_train > 0 else 4096
        _positive("n_ctx", n_ctx)
        _positive("n_batch", n_batch)
        _positive("n_ubatch", n_ubatch)
        cpus = default_threads()
        n_threads = _positive("n_threads", cpus if n_threads is None else n_threads)
        n_threads_batch = _positive(
            "n_threads_batch", n_threads if n_threads_batch is None else n_threads_batch)
        if not isinstance(embeddings, bool):
            raise ConfigError(f"embeddings must be True or False, got {embeddings!r}",
                              key="embeddings")
        if pooling not in _POOLING:
            raise ConfigError(f"pooling must be one of {sorted(k for k in _POOLING if k)} or "
                              f"None, got {pooling!r}", key="pooling")
        check_seed(seed)
        _positive("n_seq_max", n_seq_max)
        if n_seq_max > _MAX_SEQUENCES:
            raise ConfigError(f"n_seq_max must be at most {_MAX_SEQUENCES} (llama.cpp's limit), "
                              f"got {n_seq_max}", key="n_seq_max")
        if n_seq_max > n_batch:
            # llama.cpp reserves an output row per sequence within n_batch, and asserts.
            raise ConfigError(f"n_seq_max={n_seq_max} must not exceed n_batch={n_batch}",
                              key="n_seq_max")
        if kv_unified is None:
            kv_unified = embeddings
        elif not isinstance(kv_unified, bool):
            raise ConfigError(f"kv_unified must be True, False or None, got {kv_unified!r}",
                              key="kv_unified")
        handle = ContextHandle(
            model._handle, n_ctx=n_ctx, n_batch=n_batch, n_ubatch=min(n_ubatch, n_batch),
            n_seq_max=_positive("n_seq_max", n_seq_max), n_threads=n_threads,
            n_threads_batch=n_threads_batch,
            embeddings=embeddings, pooling_type=_POOLING[pooling], kv_unified=kv_unified,
            knobs=knobs, max_positions=learned_positions(model))
        return cls(model, handle, seed=seed, n_threads=n_threads,
                   n_threads_batch=n_threads_batch)

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Free the context; a second call does nothing."""
        self._handle.close()

    @property
    def closed(self) -> bool:
        return self._handle.closed

    def __enter__(self) -> Context:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return "<llamakit.Context closed>"
        return f"<llamakit.Context n_ctx={self.n_ctx} n_batch={self.n_batch}>"

    # -- facts ---------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        self._handle.ptr  # noqa: B018 - ClosedError after close
        return self._handle.n_ctx

    @property
    def n_batch(self) -> int:
        self._handle.ptr  # noqa: B018
        return self._handle.n_batch

    @property
    def n_ubatch(self) -> int:
        self._handle.ptr  # noqa: B018
        return self._handle.n_ubatch

    @property
    def pooling(self) -> str:
        self._handle.ptr  # noqa: B018
        return _POOLING_NAMES.get(self._handle.pooling_type, "none")

    # -- tokens --------------------------------------------------------------------------
    def tokenize(self, text: str | bytes, add_special: bool = True,
                 parse_special: bool = False) -> list[int]:
        """Same as ``Model.tokenize``."""
        self._handle.ptr  # noqa: B018
        return self.model.tokenize(text, add_special, parse_special)

    def detokenize(self, tokens: list[int] | tuple[int, ...], remove_special: bool = False,
                   unparse_special: bool = False) -> str:
        """Same as ``Model.detokenize``."""
        self._handle.ptr  # noqa: B018
        return self.model.detokenize(tokens, remove_special, unparse_special)

    def reset(self) -> None:
        """Forget every evaluated token (clears the KV cache)."""
        with self._lock:
            self._handle.clear_memory()
            self._past = []

    def cancel(self) -> None:
        """Stop a running generate/stream/embeddings call, from any thread.

        llama.cpp stops at its next graph node and the call raises ``AbortedError``; the
        tokens evaluated before stay cached, so the context stays usable. A call that
        starts afterwards is not affected. (Ctrl-C stops a call on the main thread the same
        way, raising ``KeyboardInterrupt``.)
        """
        self._handle.set_abort(True)

    abort = cancel

    def _sync_past(self, pending: Sequence[int]) -> None:
        # After a failed or interrupted decode llama.cpp keeps the micro-batches it finished
        # and drops the one it was in: make _past what sequence 0 now holds.
        known = [*self._past, *pending]
        held = self._handle.pos_max(0) + 1
        if held <= len(known):
            self._past = known[:held]
        else:
            self.reset()

    # -- generation ------------------------------------------------------------------------
    def _prompt_tokens(self, prompt: Prompt, parse_special: bool,
                       on_overflow: OverflowPolicy = "error", n_keep: int = 0) -> list[int]:
        if isinstance(prompt, (str, bytes)):
            tokens = self.model.tokenize(prompt, add_special=True, parse_special=parse_special)
        else:
            tokens = self.model._handle.check_tokens(prompt)
        if not tokens:
            raise EmptyPromptError(
                "the prompt has no tokens (an empty string on a model that adds no BOS, or "
                "an empty token list); give at least one token")
        return fit_prompt(tokens, self.n_ctx, on_overflow, n_keep)

    def _shift(self, n_keep: int) -> None:
        """llama.cpp's context shift on sequence 0: keep ``n_keep`` tokens, drop half of
        the rest, move what follows down."""
        n_past = len(self._past)
        discard = shift_plan(n_past, n_keep)
        memory.kv_remove(self._handle, 0, n_keep, n_keep + discard)
        memory.kv_add(self._handle, 0, n_keep + discard, n_past, -discard)
        self._past = self._past[:n_keep] + self._past[n_keep + discard:]

    def _evaluate_prompt(self, tokens: list[int]) -> int:
        """Bring sequence 0 to ``tokens``, reusing the shared prefix; returns its length."""
        handle = self._handle
        if self._past_epoch != handle.memory_epoch:
            self._past, self._past_epoch = [], handle.memory_epoch
        common = 0
        for old, new in zip(self._past, tokens, strict=False):
            if old != new:
                break
            common += 1
        common = min(common, len(tokens) - 1)  # the last token is evaluated for its logits
        if common < len(self._past) and not handle.remove_from(0, common):
            handle.clear_memory()
            common = 0
        self._past = self._past[:common]
        try:
            for start in range(common, len(tokens), self.n_batch):
                chunk = tokens[start:start + self.n_batch]
                handle.decode(chunk)
                self._past.extend(chunk)
        except BaseException:
            self._sync_past(tokens[len(self._past):])
            raise
        return common

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

    def _run(self, prompt: Prompt, max_new_tokens: int | None, stop: str | Sequence[str] | None,
             parse_special: bool, sampling: Mapping[str, Any],
             sampler: SamplerChain | None = None, where: str = "generate()",
             on_overflow: OverflowPolicy = "error", n_keep: int = 0
             ) -> Iterator[str | GenerationResult]:
        if max_new_tokens is None:
            max_new_tokens = self.max_new_tokens
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
                or max_new_tokens < 0:
            raise ConfigError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}",
                              key="max_new_tokens")
        stops = stop_strings(self.stop if stop is None else stop)
        if sampler is not None:
            if sampling:
                raise SamplerError(f"{where}: give either sampler= or sampling keywords "
                                   f"({', '.join(sorted(sampling))}), not both")
            if not isinstance(sampler, SamplerChain):
                raise SamplerError(f"sampler must be a llamakit.SamplerChain, got {sampler!r}")
            sampler._check_context(self)
            params, seed = SamplingParams(), sampler.seed
        else:
            params = self._sampling(sampling, where)
            chosen = params.values.get("seed")
            seed = chosen if chosen is not None else random_seed()
        model_handle = self.model._handle
        on_overflow, n_keep = check_policy(on_overflow, n_keep, self.n_ctx)
        if on_overflow == "shift" and not self.kv.can_shift:
            raise ConfigError("on_overflow='shift' needs a model whose KV cache can shift "
                              "positions; use 'truncate'", key="on_overflow")
        tokens = self._prompt_tokens(prompt, parse_special, on_overflow, n_keep)
        return self._loop(tokens, max_new_tokens, stops, params, seed, model_handle, sampler,
                          on_overflow, n_keep)

    def _loop(self, prompt: list[int], max_new_tokens: int, stops: list[str],
              params: SamplingParams, seed: int | None, model_handle: Any,
              chain: SamplerChain | None = None, on_overflow: OverflowPolicy = "error",
              n_keep: int = 0) -> Iterator[str | GenerationResult]:
        handle = self._handle
        with self._lock:
            handle.set_abort(False)
            handle.reset_perf()
            started = time.perf_counter()
            owned = chain is None
            if chain is None:
                assert seed is not None
                chain = SamplerChain.from_stages(self.model, params.stages(seed, handle.n_ctx))
            else:
                seed = chain.seed
            try:
                chain._start(prompt)
                sampler = chain._handle
                cached = self._evaluate_prompt(prompt) if max_new_tokens > 0 else 0
                prompt_done = time.perf_counter()
                generated: list[int] = []
                assembler = TextAssembler(stops)
                finish: FinishReason = "length"
                n_ctx = handle.n_ctx
                overflowed = False
                while len(generated) < max_new_tokens:
                    token = sampler.sample(handle)
                    if model_handle.is_eog(token):
                        finish = "eog"
                        break
                    generated.append(token)
                    ready = assembler.feed(model_handle.piece(token, False))
                    if ready:
                        yield ready
                    if assembler.stopped:
                        finish = "stop"
                        break
                    if len(generated) >= max_new_tokens:
                        break
                    if len(self._past) >= n_ctx:
                        if on_overflow != "shift":
                            overflowed = on_overflow == "error"
                            break
                        self._shift(n_keep)
                    try:
                        handle.decode([token])
                    except BaseException:
                        self._sync_past([token])
                        raise
                    self._past.append(token)
                rest = assembler.finish()
                if rest:
                    yield rest
                finished = time.perf_counter()
                timings = Timings(
                    prompt_tokens=len(prompt), prompt_tokens_cached=cached,
                    prompt_ms=(prompt_done - started) * 1000, generated_tokens=len(generated),
                    generated_ms=(finished - prompt_done) * 1000,
                    total_ms=(finished - started) * 1000, native=handle.perf())
                result = GenerationResult(text=assembler.text, tokens=generated,
                                          finish_reason=finish, timings=timings,
                                          prompt_tokens=prompt,
                                          seed=None if owned and params.greedy else seed)
                if overflowed:
                    error = ContextOverflowError(len(prompt) + len(generated), n_ctx,
                                                 what="prompt and generated text")
                    error.result = result
                    raise error
                yield result
            finally:
                if owned:
                    chain.close()

    def generate(self, prompt: Prompt, *, max_new_tokens: int | None = None,
                 stop: str | Sequence[str] | None = None, parse_special: bool = True,
                 sampler: SamplerChain | None = None, on_overflow: OverflowPolicy = "error",
                 n_keep: int = 0,
                 **sampling: Unpack[SamplingKwargs]) -> GenerationResult:
        """Generate a completion of ``prompt`` (text or token ids).

        Sampling: llama.cpp's keywords (``temperature=0.8, top_k=40, top_p=0.95,
        min_p=0.05, repeat_penalty, frequency_penalty, presence_penalty, typical_p,
        mirostat, dry_*, xtc_*, logit_bias, seed``, ...; see ``SamplingKwargs``), a
        constraint (``grammar``, ``json_schema``, ``response_format``), or a ``sampler=``
        chain instead of all of these. Unset keywords come from the context's
        ``[sampling]`` config, then the model's GGUF recommendations
        (``general.sampling.*``), then llama.cpp's defaults; ``temperature=0`` is greedy.
        Generation ends at an end-of-generation token (``"eog"``), a stop string
        (``"stop"``, cut from the text) or after ``max_new_tokens`` (default 256). A full
        context follows ``on_overflow``: ``"error"`` raises ``ContextOverflowError`` (with
        the partial result as ``.result``), ``"truncate"`` ends with ``"length"``,
        ``"shift"`` keeps ``n_keep`` tokens, drops half of the rest and goes on.
        Special-token text in a string prompt is parsed unless ``parse_special=False``.
        """
        result: GenerationResult | None = None
        for item in self._run(prompt, max_new_tokens, stop, parse_special, sampling, sampler,
                              "generate()", on_overflow, n_keep):
            if isinstance(item, GenerationResult):
                result = item
        assert result is not None
        return result

    def stream(self, prompt: Prompt, *, max_new_tokens: int | None = None,
               stop: str | Sequence[str] | None = None, parse_special: bool = True,
               sampler: SamplerChain | None = None, on_overflow: OverflowPolicy = "error",
               n_keep: int = 0,
               **sampling: Unpack[SamplingKwargs]) -> TextStream:
        """Like ``generate`` but yields text pieces as they are produced.

        A multi-byte character is never split across pieces, and text that might begin a
        stop string is held back until it is known not to. After the loop the stream's
        ``result`` holds the ``GenerationResult``.
        """
        return TextStream(self._run(prompt, max_new_tokens, stop, parse_special, sampling,
                                    sampler, "stream()", on_overflow, n_keep))

    # -- embeddings ---------------------------------------------------------------------
