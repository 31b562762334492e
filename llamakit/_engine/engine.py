"""``Engine``: one model, one context with ``n_parallel`` slots, one scheduling thread.

Callers in any thread (or any event loop) submit requests; the scheduler thread admits
them into free slots between decode steps and drives the shared ``BatchStepper`` (the core
of ``Context.generate_batch``), so every step decodes one token of each running request and
the prompts of newly admitted ones together (continuous batching). Requests are validated
and their sampler chains built at submission, on the caller's thread, by the same code as
``Context.generate``; the scheduler only admits, steps and delivers.
"""

from __future__ import annotations

import asyncio
import atexit
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from .._batch import BatchSlot, BatchStepper, new_recorder, starts_ahead
from .._chat.prepare import chat_result
from .._chat.results import ChatResult
from .._config.fields import check_field, check_fields, field_default
from .._config.schema import ContextConfig, EngineConfig
from .._context_text import TextAssembler
from .._errors import (
    ClosedError,
    ConfigError,
    ContextError,
    ContextOverflowError,
    EmptyPromptError,
    EngineClosedError,
    QueueFullError,
)
from .._logprobs import check_logprobs
from .._native import memory
from .._results import GenerationResult
from .._sampler_chain import SamplerChain
from .request import AsyncStream, Request, submit_async
from .slots import EngineSlot, choose_slot, common_prefix

if TYPE_CHECKING:
    from .._chat.messages import Messages
    from .._context import Context
    from .._context_core import Prompt
    from .._model import Model
    from .._rerank import RerankResult

__all__ = ["Engine", "EngineStats"]

_TTFT_KEPT = 1000
#: Engines still open, closed (without draining) when the interpreter exits, so that no
#: decode runs while the model and context are being freed.
_OPEN: weakref.WeakSet[Engine] = weakref.WeakSet()
R = TypeVar("R")
#: Request kinds that use the whole context (not a slot): run between decode steps.
_WHOLE = ("embed", "rerank")


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of an engine's slots, queue and counters (since it started)."""

    n_parallel: int
    slots_busy: int
    queue_depth: int
    max_queue: int
    requests_total: int
    requests_cancelled: int
    requests_failed: int
    prompt_tokens_total: int
    generated_tokens_total: int
    cached_tokens_total: int
    #: Time to first token of the most recent requests (at most 1000), in seconds.
    ttft_seconds: tuple[float, ...]
    ttft_seconds_sum: float
    ttft_count: int
    uptime_seconds: float


class Engine:
    """Serves completions, chats and embeddings of one model to many callers at once.

    ``n_ctx`` is the total context, split evenly over the ``n_parallel`` slots (each gets
    ``n_ctx // n_parallel`` positions, as in llama-server); requests beyond the slots wait
    in a queue of ``max_queue``, and one more raises ``QueueFullError``. Other keywords
    (``n_batch``, ``n_threads``, ``seed``, ...) go to ``model.new_context``. Unset engine
    parameters take the defaults of the ``[engine]`` config section. An engine made with
    ``embeddings=True`` serves ``embed`` only (its context computes embeddings, not
    logits); one without serves generation only.
    """

    def __init__(self, model: Model, n_parallel: int | None = None, n_ctx: int | None = None,
                 max_queue: int | None = None, embeddings: bool | None = None,
                 cache_prompt: bool | None = None, slot_prompt_similarity: float | None = None,
                 **context_kwargs: Any) -> None:
        given = {"n_parallel": n_parallel, "n_ctx": n_ctx, "max_queue": max_queue,
                 "cache_prompt": cache_prompt, "slot_prompt_similarity": slot_prompt_similarity}
        # The [engine] section is the one source: each keyword is checked by its field,
        # and an unset one takes the field's default.
        config = EngineConfig(**check_fields(
            EngineConfig, {k: v for k, v in given.items() if v is not None}))
        embeddings = field_default(ContextConfig, "embeddings") if embeddings is None \
            else check_field(ContextConfig, "embeddings", embeddings)
        for key in ("n_seq_max", "n_ctx"):
            if key in context_kwargs:
                raise ConfigError(f"the engine sets the context's {key}; use n_parallel/n_ctx",
                                  key=key)
        self.config = config
        self.n_parallel = config.n_parallel
        self.max_queue = config.max_queue
        self.cache_prompt = config.cache_prompt
        total = config.n_ctx
        if total is None:
            train = model.info.n_ctx_train
            total = self.n_parallel * (min(train, 4096) if train > 0 else 4096)
        if total < self.n_parallel:
            raise ConfigError(f"n_ctx={total} leaves no room for {self.n_parallel} slots",
                              key="engine.n_ctx")
        self.model = model
        self._ctx: Context = model.new_context(n_ctx=total, n_seq_max=self.n_parallel,
                                               embeddings=bool(embeddings), **context_kwargs)
        handle = self._ctx._handle
        if handle.n_seq_max > handle.n_batch:
            self._ctx.close()
            raise ConfigError(f"n_batch={handle.n_batch} must be at least n_parallel="
                              f"{self.n_parallel}", key="n_batch")
        self.embeddings = bool(embeddings)
        self.n_ctx = handle.n_ctx
        self.n_ctx_slot = handle.n_ctx_seq
        self._slots = [EngineSlot(seq_id=i) for i in range(self.n_parallel)]
        self._cond = threading.Condition()
        self._queue: deque[Request[Any]] = deque()
        self._closing = False
        self._abort = False
        self._uses = 0
        self._counts = dict.fromkeys(
            ("requests_total", "requests_cancelled", "requests_failed", "prompt_tokens_total",
             "generated_tokens_total", "cached_tokens_total"), 0)
        self._ttft: deque[float] = deque(maxlen=_TTFT_KEPT)
        self._ttft_sum = 0.0
        self._ttft_count = 0
        self._mean_seconds = 1.0
        self._started = time.monotonic()
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="llamakit-submit")
        self._thread = threading.Thread(target=self._run, name="llamakit-engine", daemon=True)
        self._thread.start()
        _OPEN.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closing else f"n_parallel={self.n_parallel}"
        return f"<llamakit.Engine {state} n_ctx={self.n_ctx}>"

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closing

    # -- submission --------------------------------------------------------------------
    def submit(self, prompt: Prompt | None = None, *, tokens: Sequence[int] | None = None,
               **gen_kwargs: Any) -> Request[GenerationResult]:
        """Queue a completion of ``prompt`` (text) or ``tokens``; takes the keywords of
        ``Context.generate`` (except ``sampler=``; ``on_overflow`` is ``"error"`` or
        ``"truncate"``), ``logprobs``/``post_sampling_probs`` included. Returns the
        ``Request`` at once."""
        return self._submit(prompt, tokens, None, None, gen_kwargs)

    def _submit(self, prompt: Prompt | None, tokens: Sequence[int] | None,
                sink: Callable[[Any], None] | None, wrap: Callable[[Any], Any] | None,
                gen_kwargs: dict[str, Any]) -> Request[GenerationResult]:
        if (prompt is None) == (tokens is None):
            raise ConfigError("give either a prompt or tokens=", key="prompt")
        if self.embeddings:
            raise ContextError("this engine was made with embeddings=True and serves embed() "
                               "only; make another Engine for generation")
        if "sampler" in gen_kwargs:
            raise ConfigError("engine requests take sampling keywords, not sampler=",
                              key="sampler")
        if gen_kwargs.get("on_overflow") == "shift":
            raise ConfigError("the engine does not shift a slot's context; use "
                              "on_overflow='error' or 'truncate'", key="on_overflow")
        self._check_open()
        ctx = self._ctx
        max_new_tokens = gen_kwargs.pop("max_new_tokens", None)
        stop = gen_kwargs.pop("stop", None)
        parse_special = gen_kwargs.pop("parse_special", True)
        on_overflow = gen_kwargs.pop("on_overflow", "error")
        n_keep = gen_kwargs.pop("n_keep", 0)
        stop_tokens = frozenset(int(t) for t in gen_kwargs.pop("stop_tokens", ()) or ())
        preserved = frozenset(int(t) for t in gen_kwargs.pop("preserved_tokens", ()) or ())
        post_sampling = gen_kwargs.pop("post_sampling_probs", False)
        top_logprobs = check_logprobs(gen_kwargs.pop("logprobs", None), post_sampling)
        try:
            tokens_in, limit, stops, params, seed, on_overflow, _, _ = ctx._prepare(
                prompt if prompt is not None else list(tokens or ()), max_new_tokens, stop,
                parse_special, gen_kwargs, None, "Engine.submit()", on_overflow, n_keep,
                n_ctx=self.n_ctx_slot)
        except ClosedError:
            if self._closing:  # closed while this request was being prepared
                raise EngineClosedError("the engine is closed") from None
            raise
        assert seed is not None
        stages = params.stages(seed, self.n_ctx_slot)
        chain = SamplerChain.from_stages(self.model, stages)
        try:
            chain._start(tokens_in)
            request: Request[GenerationResult] = Request(self._wake, sink=sink, wrap=wrap)
            request.tokens = tokens_in
            request.payload = {"chain": chain, "stops": stops, "limit": limit, "seed": seed,
                               "show_seed": not params.greedy, "on_overflow": on_overflow,
                               "stop_tokens": stop_tokens, "preserved_tokens": preserved,
                               "logprobs": (top_logprobs, post_sampling),
                               "in_graph": params.in_graph(stages, top_logprobs)}
            self._enqueue(request)
        except BaseException:
            chain.close()
            raise
        return request

    def submit_chat(self, messages: Messages, *, template: Any = None,
                    tools: Sequence[Mapping[str, Any]] | None = None,
                    continue_final_message: bool | None = None,
                    chat_template_kwargs: Mapping[str, Any] | None = None,
                    **gen_kwargs: Any) -> Request[ChatResult]:
        """Queue a chat turn: the template is applied as ``Context.chat`` does; the result
        is a ``ChatResult``."""
        return self._submit_chat(messages, None, template=template, tools=tools,
                                 continue_final_message=continue_final_message,
                                 chat_template_kwargs=chat_template_kwargs, **gen_kwargs)

    def _submit_chat(self, messages: Messages, sink: Callable[[Any], None] | None, *,
                     template: Any = None, tools: Sequence[Mapping[str, Any]] | None = None,
                     continue_final_message: bool | None = None,
                     chat_template_kwargs: Mapping[str, Any] | None = None,
                     **gen_kwargs: Any) -> Request[ChatResult]:
        self._check_open()
        prepared, kwargs = self._ctx._chat_prompt(messages, template, tools,
                                                  continue_final_message, chat_template_kwargs,
                                                  dict(gen_kwargs))
        request = self._submit(None, prepared.tokens, sink,
                               lambda r: chat_result(prepared, r), kwargs)
        return request  # type: ignore[return-value]

    def submit_embed(self, texts: str | Sequence[str], *, normalize: bool = True
                     ) -> Request[npt.NDArray[np.float32]]:
        """Queue texts to embed (``embeddings=True`` engines); the result is a 2-D array
        (one row per text; 1-D for a single string)."""
        return self._submit_embed(texts, normalize, None)

    def _submit_embed(self, texts: str | Sequence[str], normalize: bool,
                      sink: Callable[[Any], None] | None) -> Request[npt.NDArray[np.float32]]:
        if not self.embeddings:
            raise ContextError("this engine was made without embeddings=True; make an "
                               "Engine(model, embeddings=True) to embed")
        self._check_open()
        single = isinstance(texts, str)
        items = [texts] if isinstance(texts, str) else list(texts)
        if not items:
            raise EmptyPromptError("no texts to embed")
        for text in items:
            if not isinstance(text, str):
                raise ConfigError(f"texts must be str, got {type(text).__name__}")
        request: Request[npt.NDArray[np.float32]] = Request(self._wake, kind="embed",
                                                            sink=sink)
        request.texts = items
        request.payload = {"normalize": normalize, "single": single}
        self._enqueue(request)
        return request

    def submit_rerank(self, query: str, documents: Sequence[str], *,
                      top_n: int | None = None) -> Request[RerankResult]:
        """Queue a ``Context.rerank`` of ``documents`` against ``query`` (an
        ``embeddings=True`` engine over a reranking model); the result is a
        ``RerankResult``. Its arguments are checked when it runs."""
        return self._submit_rerank(query, documents, top_n, None)

    def _submit_rerank(self, query: str, documents: Sequence[str], top_n: int | None,
                       sink: Callable[[Any], None] | None) -> Request[RerankResult]:
        if not self.embeddings:
            raise ContextError("rerank needs an Engine(model, embeddings=True) over a "
                               "reranking model")
        self._check_open()
        request: Request[RerankResult] = Request(self._wake, kind="rerank", sink=sink)
        # a copy: the caller may change its list before the scheduler gets to it
        kept = list(documents) if isinstance(documents, (list, tuple)) else documents
        request.payload = {"query": query, "documents": kept, "top_n": top_n}
        self._enqueue(request)
        return request

    def _check_open(self) -> None:
        if self._closing:
            raise EngineClosedError("the engine is closed")

    def _enqueue(self, request: Request[Any]) -> None:
        with self._cond:
            self._check_open()
            idle = sum(slot.request is None for slot in self._slots)
            if len(self._queue) >= self.max_queue + idle:
                waves = (len(self._queue) + 1) / self.n_parallel
                retry = max(1.0, math.ceil(self._mean_seconds * waves))
                raise QueueFullError(f"all {self.n_parallel} slots are busy and "
                                     f"{len(self._queue)} requests are queued "
                                     f"(max_queue={self.max_queue})", retry_after=retry)
            request.submitted = time.perf_counter()
            self._counts["requests_total"] += 1
            self._queue.append(request)
            self._cond.notify()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    # -- asyncio -------------------------------------------------------------------------
    def stream(self, prompt: Prompt | None = None, *, tokens: Sequence[int] | None = None,
               **gen_kwargs: Any) -> AsyncStream[GenerationResult]:
        """``async for piece in engine.stream(prompt, ...)``; ``.result`` afterwards."""
        return AsyncStream(lambda sink: self._submit_async(
            lambda: self._submit(prompt, tokens, sink, None, dict(gen_kwargs))))

    async def generate(self, prompt: Prompt | None = None, *,
                       tokens: Sequence[int] | None = None, **gen_kwargs: Any
                       ) -> GenerationResult:
        """The ``GenerationResult`` of a completion, awaited without blocking the loop."""
        return await self.stream(prompt, tokens=tokens, **gen_kwargs).collect()

    def chat_stream(self, messages: Messages, **chat_kwargs: Any) -> AsyncStream[ChatResult]:
        """``async for piece in engine.chat_stream(messages, ...)``; ``.result`` is the
        ``ChatResult`` afterwards."""
        return AsyncStream(lambda sink: self._submit_async(
            lambda: self._submit_chat(messages, sink, **chat_kwargs)))

    async def chat(self, messages: Messages, **chat_kwargs: Any) -> ChatResult:
        """The ``ChatResult`` of a chat turn, awaited without blocking the loop."""
        return await self.chat_stream(messages, **chat_kwargs).collect()

    async def embed(self, texts: str | Sequence[str], *, normalize: bool = True
                    ) -> npt.NDArray[np.float32]:
        """Embeddings of ``texts`` (``embeddings=True`` engines), ``(n, n_embd)``."""
        stream: AsyncStream[npt.NDArray[np.float32]] = AsyncStream(
            lambda sink: self._submit_async(
                lambda: self._submit_embed(texts, normalize, sink)))
        return await stream.collect()

    async def rerank(self, query: str, documents: Sequence[str], *,
                     top_n: int | None = None) -> RerankResult:
        """``submit_rerank``, awaited without blocking the loop."""
        stream: AsyncStream[RerankResult] = AsyncStream(
            lambda sink: self._submit_async(
                lambda: self._submit_rerank(query, documents, top_n, sink)))
        return await stream.collect()

    async def _submit_async(self, run: Callable[[], Request[R]]) -> Request[R]:
        self._check_open()
        try:
            return await submit_async(run, self._executor)
        except RuntimeError as error:
            if self._closing and "shutdown" in str(error):  # the executor closed meanwhile
                raise EngineClosedError("the engine is closed") from None
            raise

    # -- state -----------------------------------------------------------------------------
    def stats(self) -> EngineStats:
        with self._cond:
            return EngineStats(
                n_parallel=self.n_parallel,
                slots_busy=sum(slot.request is not None for slot in self._slots),
                queue_depth=len(self._queue), max_queue=self.max_queue,
                ttft_seconds=tuple(self._ttft), ttft_seconds_sum=self._ttft_sum,
                ttft_count=self._ttft_count,
                uptime_seconds=time.monotonic() - self._started, **self._counts)

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop the engine. ``drain``: queued and running requests finish first (new ones
        are refused); otherwise they end at once with ``EngineClosedError``. After
        ``timeout`` seconds of draining the rest is cancelled the same way."""
        with self._cond:
            self._closing = True
            if not drain:
                self._abort = True
            self._cond.notify()
        if threading.current_thread() is self._thread:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            with self._cond:
                self._abort = True
                self._cond.notify()
            self._thread.join()
        self._executor.shutdown(wait=False)

    async def aclose(self, drain: bool = True, timeout: float | None = None) -> None:
        """``close`` for an event loop: waits for the scheduler without blocking the loop."""
        await asyncio.to_thread(self.close, drain, timeout)

    # -- the scheduler thread ------------------------------------------------------------
    def _run(self) -> None:
        ctx = self._ctx
        stepper = BatchStepper(ctx._handle, self.model._handle, starts_ahead(self.model))
        # requests that arrive together are fed before their first tokens step on
        # (BatchStepper.wave); a running stream never waits for a new prompt
        stepper.wave = True
        try:
            while True:
                with self._cond:
                    while not self._abort and not self._queue and not stepper.active \
                            and not self._closing:
                        self._cond.wait()
                    if self._abort or (self._closing and not self._queue
                                       and not stepper.active):
                        break
                    admitted = self._pick()
                    cancelled = [s for s in stepper.active if s.owner.cancelled]
                with ctx._lock:
                    for slot in cancelled:
                        stepper.remove(slot)
                        self._release(slot, None, slot.owner._cancelled_error())
                    embeds = [request for request, _ in admitted if request.kind == "embed"]
                    if any(request.kind in _WHOLE for request, _ in admitted):
                        # They decode on the context: first the decode started ahead is
                        # sampled (nothing new started), then every chain comes off it.
                        if stepper.in_flight:
                            self._step(stepper, ahead=False)
                        stepper.detach_all()
                    if embeds:
                        self._embed_all(embeds)
                    for request, engine_slot in admitted:
                        if request.kind == "rerank":
                            self._rerank(request)
                        elif request.kind != "embed":
                            self._admit(request, engine_slot, stepper)
                    if stepper.active:
                        # Queued requests join as slots free up: start no decode ahead
                        # then, or their prompts would wait a step longer for it (the
                        # queue is read unlocked: a request arriving now waits one step).
                        self._step(stepper, ahead=not self._queue)
        except BaseException as error:  # a bug or a broken context: nobody may hang
            self._fail_all(stepper, error)
            raise
        finally:
            self._fail_all(stepper, EngineClosedError("the engine was closed"))
            stepper.close()
            ctx.close()

    def _pick(self) -> list[tuple[Request[Any], EngineSlot | None]]:
        """Requests to start now, with their slots (called holding ``_cond``)."""
        picked: list[tuple[Request[Any], EngineSlot | None]] = []
        for request in [r for r in self._queue if r.cancelled]:
            self._queue.remove(request)
            self._counts["requests_cancelled"] += 1
            self._close_chain(request)
            request._complete(error=request._cancelled_error())
        if self._queue and self._queue[0].kind in _WHOLE:
            # Embeddings use the whole context: pack every queued embed request at once
            # (a rerank request runs on its own, packing its pairs itself).
            while self._queue and self._queue[0].kind in _WHOLE:
                picked.append((self._queue.popleft(), None))
            return picked
        idle = [slot for slot in self._slots if slot.request is None]
        busy = {slot.seq_id for slot in self._slots if slot.request is not None}
        while self._queue and idle and self._queue[0].kind not in _WHOLE:
            request = self._queue.popleft()
            slot = choose_slot(idle, request.tokens, self.config.slot_prompt_similarity,
                               self.cache_prompt, busy)
            idle.remove(slot)
            busy.add(slot.seq_id)
            slot.request = request
            self._uses += 1
            slot.last_used = self._uses
            picked.append((request, slot))
        return picked

    def _admit(self, request: Request[Any], slot: EngineSlot | None,
               stepper: BatchStepper) -> None:
        assert slot is not None
        handle, prompt, payload = self._ctx._handle, request.tokens, request.payload
        common = 0
        if self.cache_prompt:
            common = min(common_prefix(slot.cached, prompt), len(prompt) - 1)
        if common < len(slot.cached) and not handle.remove_from(slot.seq_id, common):
            memory.kv_remove(handle, slot.seq_id, -1, -1)
            common = 0
        slot.cached = slot.cached[:common]
        batch_slot = BatchSlot(seq_id=slot.seq_id, prompt=prompt, chain=payload["chain"],
                               assembler=TextAssembler(payload["stops"]),
                               limit=payload["limit"], seed=payload["seed"],
                               started=time.perf_counter(), owner=request, fed=common,
                               cached=common, kv=prompt[:common],
                               stop_tokens=payload["stop_tokens"],
                               preserved_tokens=payload["preserved_tokens"],
                               recorder=new_recorder(handle, self.model._handle,
                                                     *payload["logprobs"]))
        request.slot = batch_slot
        with self._cond:
            self._counts["prompt_tokens_total"] += len(prompt)
            self._counts["cached_tokens_total"] += common
        if batch_slot.limit == 0:
            batch_slot.finish = "length"
            self._finish(batch_slot)
            return
        stepper.add(batch_slot, payload["in_graph"])

    def _step(self, stepper: BatchStepper, ahead: bool = True) -> None:
        running = list(stepper.active)
        try:
            events = stepper.step(ahead)
        except Exception as error:
            # A failed decode leaves the sequences in an unknown state: fail the running
            # requests, empty the memory and go on with the queue.
            for slot in list(stepper.active):
                stepper.remove(slot)
                self._release(slot, None, error)
            self._ctx._handle.clear_memory()
            for engine_slot in self._slots:
                engine_slot.cached = []
            return
        for slot in running:
            if slot.first_token and "ttft" not in slot.owner.payload:
                slot.owner.payload["ttft"] = slot.first_token - slot.owner.submitted
                self._record_ttft(slot.owner.payload["ttft"])
        for slot, piece in events:
            request = slot.owner
            if piece:
                request._emit(piece)
            if slot.finish is not None:
                self._finish(slot)

    def _finish(self, slot: BatchSlot) -> None:
        request = slot.owner
        rest = slot.rest()
        if rest:
            request._emit(rest)
        result = slot.result(show_seed=request.payload["show_seed"])
        error: BaseException | None = None
        if result.finish_reason == "length" and len(result.tokens) < slot.limit \
                and request.payload["on_overflow"] == "error":
            overflow = ContextOverflowError(len(slot.prompt) + len(slot.generated),
                                            self.n_ctx_slot, what="prompt and generated text")
            overflow.result = result
            error = overflow
        self._release(slot, result, error)

    def _release(self, slot: BatchSlot, result: GenerationResult | None,
                 error: BaseException | None) -> None:
        """Free the slot of a finished, cancelled or failed request; keep its tokens."""
        request = slot.owner
        slot.chain.close()
        engine_slot = self._slots[slot.seq_id]
        if self.cache_prompt:
            engine_slot.cached = list(slot.kv)
        else:
            memory.kv_remove(self._ctx._handle, slot.seq_id, -1, -1)
            engine_slot.cached = []
        with self._cond:
            engine_slot.request = None
            self._counts["generated_tokens_total"] += len(slot.generated)
            if error is not None:
                key = "requests_cancelled" if request.cancelled else "requests_failed"
                self._counts[key] += 1
            else:
                elapsed = time.perf_counter() - request.submitted
                self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * elapsed
        request._complete(result, error)

    def _record_ttft(self, seconds: float) -> None:
        with self._cond:
            self._ttft.append(seconds)
            self._ttft_sum += seconds
            self._ttft_count += 1

    def _embed_all(self, requests: list[Request[Any]]) -> None:
        """Embed the texts of every waiting request together, packed as
        ``Context.embeddings`` packs a list; one bad text fails only its own request."""
        if len(requests) > 1:
            texts = [text for request in requests for text in request.texts]
            try:
                vectors = self._ctx.embeddings(texts, normalize=False)
            except Exception:  # find the culprit: each request on its own
                pass
            else:
                start = 0
                for request in requests:
                    end = start + len(request.texts)
                    self._embedded(request, vectors[start:end])
                    start = end
                return
        for request in requests:
            try:
                vectors = self._ctx.embeddings(request.texts, normalize=False)
            except Exception as error:
                with self._cond:
                    self._counts["requests_failed"] += 1
                request._complete(error=error)
                continue
            self._embedded(request, vectors)

    def _rerank(self, request: Request[Any]) -> None:
        payload = request.payload
        try:
            result = self._ctx.rerank(payload["query"], payload["documents"],
                                      top_n=payload["top_n"])
        except Exception as error:
            with self._cond:
                self._counts["requests_failed"] += 1
            request._complete(error=error)
            return
        request._complete(result)

    def _embedded(self, request: Request[Any], vectors: npt.NDArray[np.float32]) -> None:
        if request.payload["normalize"]:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = (vectors / np.where(norms > 0, norms, 1)).astype(np.float32)
        with self._cond:
            self._counts["prompt_tokens_total"] += sum(
                len(self.model.tokenize(t)) for t in request.texts)
        request._complete(vectors[0] if request.payload["single"] else vectors)

    def _close_chain(self, request: Request[Any]) -> None:
        chain = request.payload.get("chain")
        if chain is not None:
            chain.close()

    def _fail_all(self, stepper: BatchStepper, error: BaseException) -> None:
        for slot in list(stepper.active):
            stepper.remove(slot)
            self._release(slot, None, error)
        with self._cond:
            queued = list(self._queue)
            self._queue.clear()
            self._closing = True
        for request in queued:
            self._close_chain(request)
            request._complete(error=error)




@atexit.register
def _close_open_engines() -> None:
    for engine in list(_OPEN):
        engine.close(drain=False)
