"""``Context``: evaluation state over a model; generation, streaming, embeddings."""

from __future__ import annotations

import codecs
import os
import threading
import time
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._errors import (
    ConfigError,
    ContextError,
    ContextOverflowError,
    EmptyPromptError,
)
from ._native.context import ContextHandle
from ._native.sampler import SamplerHandle
from ._results import FinishReason, GenerationResult, TextStream, Timings
from ._sampling import SamplingParams, check_seed, random_seed

if TYPE_CHECKING:
    from ._model import Model

__all__ = ["Context"]

_POOLING = {None: -1, "none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}
_POOLING_NAMES = {v: k for k, v in _POOLING.items() if k is not None}

Prompt = str | bytes | Sequence[int]


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}", key=name)
    return value


def _stop_strings(stop: str | Sequence[str] | None) -> list[str]:
    if stop is None:
        return []
    values = [stop] if isinstance(stop, str) else list(stop)
    for value in values:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"stop strings must be non-empty str, got {value!r}", key="stop")
    return values


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that could begin a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class TextAssembler:
    """Turns token bytes into text pieces that are safe to show.

    Bytes of an unfinished UTF-8 character wait for the rest; text that could be the
    beginning of a stop string waits until it is known not to be one.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = list(stops)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self.stopped = False
        self.parts: list[str] = []

    def feed(self, data: bytes) -> str:
        """Add a token's bytes; return the text now ready (possibly empty)."""
        pending = self._pending + self._decoder.decode(data)
        keep = 0
        if self.stops:
            cut = min((i for i in (pending.find(s) for s in self.stops) if i >= 0), default=-1)
            if cut >= 0:
                self.stopped = True
                self._pending = ""
                return self._emit(pending[:cut])
            keep = _held_back(pending, self.stops)
        self._pending = pending[len(pending) - keep:]
        return self._emit(pending[:len(pending) - keep])

    def finish(self) -> str:
        """Flush what was held back (nothing after a stop string matched)."""
        if self.stopped:
            return ""
        rest = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return self._emit(rest)

    def _emit(self, text: str) -> str:
        if text:
            self.parts.append(text)
        return text

    @property
    def text(self) -> str:
        return "".join(self.parts)


class Context:
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
        self._lock = threading.RLock()

    @classmethod
    def _create(cls, model: Model, *, n_ctx: int | None, n_batch: int, n_ubatch: int,
                n_threads: int | None, n_threads_batch: int | None, embeddings: bool,
                seed: int | None, pooling: str | None) -> Context:
        info = model.info
        if n_ctx is None:
            n_ctx = min(info.n_ctx_train, 4096) if info.n_ctx_train > 0 else 4096
        _positive("n_ctx", n_ctx)
        _positive("n_batch", n_batch)
        _positive("n_ubatch", n_ubatch)
        cpus = os.cpu_count() or 1
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
        handle = ContextHandle(
            model._handle, n_ctx=n_ctx, n_batch=n_batch, n_ubatch=min(n_ubatch, n_batch),
            n_seq_max=1, n_threads=n_threads, n_threads_batch=n_threads_batch,
            embeddings=embeddings, pooling_type=_POOLING[pooling])
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

    def abort(self) -> None:
        """Ask a running generate/stream/embeddings call (in another thread) to stop; it
        raises ``AbortedError``."""
        self._handle.set_abort(True)

    # -- generation ------------------------------------------------------------------------
    def _prompt_tokens(self, prompt: Prompt, parse_special: bool) -> list[int]:
        if isinstance(prompt, (str, bytes)):
            tokens = self.model.tokenize(prompt, add_special=True, parse_special=parse_special)
        else:
            tokens = self.model._handle.check_tokens(prompt)
        if not tokens:
            raise EmptyPromptError(
                "the prompt has no tokens (an empty string on a model that adds no BOS, or "
                "an empty token list); give at least one token")
        if len(tokens) > self.n_ctx:
            raise ContextOverflowError(len(tokens), self.n_ctx)
        return tokens

    def _evaluate_prompt(self, tokens: list[int]) -> int:
        """Bring sequence 0 to ``tokens``, reusing the shared prefix; returns its length."""
        handle = self._handle
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
            self.reset()
            raise
        return common

    def _sampling(self, overrides: dict[str, Any]) -> SamplingParams:
        base = self.sampling
        values = {name: overrides[name] if overrides.get(name) is not None
                  else getattr(base, name)
                  for name in ("temperature", "top_k", "top_p", "min_p", "seed")}
        if overrides.get("seed") is None and self.seed is not None:
            values["seed"] = self.seed
        return SamplingParams(**values)

    def _run(self, prompt: Prompt, max_new_tokens: int | None, stop: str | Sequence[str] | None,
             parse_special: bool, sampling: dict[str, Any]) -> Iterator[str | GenerationResult]:
        if max_new_tokens is None:
            max_new_tokens = self.max_new_tokens
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
                or max_new_tokens < 0:
            raise ConfigError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}",
                              key="max_new_tokens")
        stops = _stop_strings(self.stop if stop is None else stop)
        params = self._sampling(sampling)
        seed = params.seed if params.seed is not None else random_seed()
        model_handle = self.model._handle
        tokens = self._prompt_tokens(prompt, parse_special)
        return self._loop(tokens, max_new_tokens, stops, params, seed, model_handle)

    def _loop(self, prompt: list[int], max_new_tokens: int, stops: list[str],
              params: SamplingParams, seed: int, model_handle: Any
              ) -> Iterator[str | GenerationResult]:
        handle = self._handle
        with self._lock:
            handle.set_abort(False)
            handle.reset_perf()
            started = time.perf_counter()
            sampler = SamplerHandle.chain(handle.native, params.stages(seed), model_handle)
            try:
                cached = self._evaluate_prompt(prompt) if max_new_tokens > 0 else 0
                prompt_done = time.perf_counter()
                generated: list[int] = []
                assembler = TextAssembler(stops)
                finish: FinishReason = "length"
                n_ctx = handle.n_ctx
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
                    if len(generated) >= max_new_tokens or len(self._past) >= n_ctx:
                        break
                    try:
                        handle.decode([token])
                    except BaseException:
                        self.reset()
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
                yield GenerationResult(text=assembler.text, tokens=generated,
                                       finish_reason=finish, timings=timings,
                                       prompt_tokens=prompt,
                                       seed=None if params.greedy else seed)
            finally:
                sampler.close()

    def generate(self, prompt: Prompt, *, max_new_tokens: int | None = None,
                 temperature: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, min_p: float | None = None,
                 seed: int | None = None, stop: str | Sequence[str] | None = None,
                 parse_special: bool = True) -> GenerationResult:
        """Generate a completion of ``prompt`` (text or token ids).

        Defaults: ``max_new_tokens=256, temperature=0.8, top_k=40, top_p=0.95,
        min_p=0.05`` (or the context's ``[sampling]`` config); ``temperature=0`` is greedy.
        Generation ends at an end-of-generation token (``"eog"``), a stop string
        (``"stop"``, cut from the text) or after ``max_new_tokens`` or a full context
        (``"length"``). Special-token text in a string prompt is parsed unless
        ``parse_special=False``.
        """
        result: GenerationResult | None = None
        for item in self._run(prompt, max_new_tokens, stop, parse_special, {
                "temperature": temperature, "top_k": top_k, "top_p": top_p, "min_p": min_p,
                "seed": seed}):
            if isinstance(item, GenerationResult):
                result = item
        assert result is not None
        return result

    def stream(self, prompt: Prompt, *, max_new_tokens: int | None = None,
               temperature: float | None = None, top_k: int | None = None,
               top_p: float | None = None, min_p: float | None = None,
               seed: int | None = None, stop: str | Sequence[str] | None = None,
               parse_special: bool = True) -> TextStream:
        """Like ``generate`` but yields text pieces as they are produced.

        A multi-byte character is never split across pieces, and text that might begin a
        stop string is held back until it is known not to. After the loop the stream's
        ``result`` holds the ``GenerationResult``.
        """
        return TextStream(self._run(prompt, max_new_tokens, stop, parse_special, {
            "temperature": temperature, "top_k": top_k, "top_p": top_p, "min_p": min_p,
            "seed": seed}))

    # -- embeddings ---------------------------------------------------------------------
    def embeddings(self, text_or_texts: str | Sequence[str], *, pooling: str | None = None,
                   normalize: bool = True) -> npt.NDArray[np.float32]:
        """Embedding of a text (1-D, ``n_embd``) or of each text in a list (2-D).

        The context must be made with ``embeddings=True``. ``pooling`` (``"mean"``,
        ``"cls"``, ``"last"``) applies when the model itself does not pool; a model that
        pools uses its own method. ``normalize`` scales each vector to unit L2 norm.
        """
        handle = self._handle
        if not handle.embeddings:
            raise ContextError("this context was created without embeddings=True; use "
                               "model.new_context(embeddings=True) for embeddings")
        single = isinstance(text_or_texts, str)
        texts = [text_or_texts] if single else list(text_or_texts)
        if not texts:
            raise EmptyPromptError("no texts to embed")
        native_pooling = _POOLING_NAMES.get(handle.pooling_type, "none")
        if pooling is not None and pooling not in ("mean", "cls", "last"):
            raise ConfigError(f"pooling must be 'mean', 'cls' or 'last', got {pooling!r}",
                              key="pooling")
        if native_pooling != "none" and pooling not in (None, native_pooling):
            raise ContextError(f"this context pools with {native_pooling!r}; create it with "
                               f"new_context(embeddings=True, pooling={pooling!r}) instead")
        n_embd = self.model.info.n_embd
        encode = self.model.has_encoder and not self.model.has_decoder
        vectors = []
        with self._lock:
            handle.set_abort(False)
            for text in texts:
                if not isinstance(text, str):
                    raise ConfigError(f"texts must be str, got {type(text).__name__}")
                tokens = self.model.tokenize(text, add_special=True, parse_special=False)
                if not tokens:
                    raise EmptyPromptError(f"text {text!r} has no tokens to embed")
                limit = min(self.n_ctx, self.n_batch)
                if len(tokens) > limit:
                    raise ContextOverflowError(len(tokens), limit, what="text to embed")
                self.reset()
                try:
                    handle.evaluate_sequences([tokens], encode=encode)
                finally:
                    handle.clear_memory()
                if native_pooling != "none":
                    vector = handle.sequence_embedding(0, n_embd)
                    if vector is None:
                        raise ContextError("llama.cpp returned no pooled embedding")
                else:
                    rows = np.stack([handle.token_embedding(i, n_embd)
                                     for i in range(len(tokens))])
                    method = pooling or "mean"
                    vector = (rows.mean(axis=0) if method == "mean" else
                              rows[0] if method == "cls" else rows[-1]).astype(np.float32)
                if normalize:
                    norm = float(np.linalg.norm(vector))
                    if norm > 0:
                        vector = (vector / norm).astype(np.float32)
                vectors.append(vector)
        return vectors[0] if single else np.stack(vectors)
