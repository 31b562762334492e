"""``Context.generate_batch``: many prompts decoded together, with continuous batching.

Each prompt gets a sequence of the context (``new_context(n_seq_max=N)`` slots) and its
own sampler chain; every step puts one pending token of each generating sequence and as
much prompt as fits into one ``llama_batch``. A finished sequence frees its slot for the
next queued prompt, so more prompts than slots work.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._context_core import ContextCore, Prompt
from ._context_text import TextAssembler, stop_strings
from ._errors import ConfigError, ContextOverflowError, EmptyPromptError
from ._native import memory
from ._native.batch import BatchHandle
from ._results import FinishReason, GenerationResult, Timings
from ._sampler_chain import SamplerChain
from ._sampling import random_seed

if TYPE_CHECKING:
    from ._sampling import SamplingParams

__all__ = ["BatchMixin", "BatchStream"]


@dataclass(eq=False)
class _Slot:
    index: int
    seq_id: int
    prompt: list[int]
    chain: SamplerChain
    assembler: TextAssembler
    seed: int
    started: float
    fed: int = 0
    pending: int | None = None
    output: int | None = None
    prompt_done: float = 0.0
    generated: list[int] = field(default_factory=list)


class BatchStream(Iterator[tuple[int, str]]):
    """``(prompt index, text piece)`` events; ``results`` is complete once exhausted."""

    def __init__(self, events: Iterator[tuple[int, str]], results: list[GenerationResult | None]
                 ) -> None:
        self._events = events
        self._results = results

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> tuple[int, str]:
        return next(self._events)

    @property
    def results(self) -> list[GenerationResult]:
        if any(r is None for r in self._results):
            raise RuntimeError("the batch has not finished; iterate the stream to the end")
        return [r for r in self._results if r is not None]

    def close(self) -> None:
        close = getattr(self._events, "close", None)
        if close is not None:
            close()


class BatchMixin(ContextCore):
    """``generate_batch`` and ``stream_batch`` of ``Context``."""

    def stream_batch(self, prompts: Sequence[Prompt], *, max_new_tokens: int | None = None,
                     stop: str | Sequence[str] | None = None, parse_special: bool = True,
                     **sampling: Any) -> BatchStream:
        """Like ``generate_batch`` but yields ``(index, piece)`` as pieces are ready."""
        if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
            raise ConfigError("prompts must be a list of prompts", key="prompts")
        if not prompts:
            raise EmptyPromptError("no prompts to generate from")
        limit = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConfigError(f"max_new_tokens must be an integer >= 0, got {limit!r}",
                              key="max_new_tokens")
        stops = stop_strings(self.stop if stop is None else stop)
        params = self._sampling(sampling, "generate_batch()")
        handle = self._handle
        if handle.n_seq_max > handle.n_batch:
            raise ConfigError(f"n_batch={handle.n_batch} must be at least n_seq_max="
                              f"{handle.n_seq_max} to batch every sequence", key="n_batch")
        token_lists = [self._prompt_tokens(p, parse_special) for p in prompts]
        for tokens in token_lists:
            if len(tokens) > handle.n_ctx_seq:
                raise ContextOverflowError(len(tokens), handle.n_ctx_seq,
                                           what="prompt (per sequence)")
        results: list[GenerationResult | None] = [None] * len(token_lists)
        events = self._batch_loop(token_lists, limit, stops, params, results)
        return BatchStream(events, results)

    def generate_batch(self, prompts: Sequence[Prompt], *, max_new_tokens: int | None = None,
                       stop: str | Sequence[str] | None = None, parse_special: bool = True,
                       **sampling: Any) -> list[GenerationResult]:
        """Generate a completion of each prompt, decoding the sequences together.

        Takes ``generate()``'s keywords; stop strings and ``max_new_tokens`` apply to each
        sequence. With a fixed ``seed`` sequence ``i`` samples with ``seed + i``. The
        context needs ``n_seq_max`` slots (``model.new_context(n_seq_max=8)``); more
        prompts than slots are queued. Results come back in the order of ``prompts``.
        """
        stream = self.stream_batch(prompts, max_new_tokens=max_new_tokens, stop=stop,
                                   parse_special=parse_special, **sampling)
        for _ in stream:
            pass
        return stream.results

    def _batch_loop(self, token_lists: list[list[int]], limit: int, stops: list[str],
                    params: SamplingParams, results: list[GenerationResult | None]
                    ) -> Iterator[tuple[int, str]]:
        handle, model = self._handle, self.model
        vocab = model._handle
        base_seed = params.values.get("seed")
        with self._lock.stream() as turn:
            handle.set_abort(False)
            self._cache.clear()
            queue = deque(enumerate(token_lists))
            free = list(range(handle.n_seq_max))
            active: list[_Slot] = []
            batch = BatchHandle(handle.native, handle.n_batch)
            try:
                while queue or active:
                    while queue and free:
                        index, tokens = queue.popleft()
                        seed = (base_seed + index) % 0xFFFFFFFF if base_seed is not None \
                            else random_seed()
                        chain = SamplerChain.from_stages(model, params.stages(seed, handle.n_ctx))
                        chain._start(tokens)
                        slot = _Slot(index=index, seq_id=free.pop(0), prompt=tokens,
                                     chain=chain, assembler=TextAssembler(stops), seed=seed,
                                     started=time.perf_counter())
                        if limit == 0:
                            yield from turn.relay(
                                self._finish(slot, "length", results, free, params))
                            continue
                        active.append(slot)
                    if not active:
                        continue
                    batch.clear()
                    room = batch.capacity
                    for slot in active:
                        slot.output = None
                        if slot.pending is not None:
                            position = len(slot.prompt) + len(slot.generated) - 1
                            slot.output = batch.add(slot.pending, position, slot.seq_id, True)
                            room -= 1
                    for slot in active:
                        while slot.pending is None and slot.fed < len(slot.prompt) and room:
                            last = slot.fed == len(slot.prompt) - 1
                            at = batch.add(slot.prompt[slot.fed], slot.fed, slot.seq_id, last)
                            slot.fed += 1
                            room -= 1
                            if last:
                                slot.output = at
                    batch.decode(handle)
                    for slot in list(active):
                        if slot.output is None:
                            continue
                        if slot.pending is None:
                            slot.prompt_done = time.perf_counter()
                        token = slot.chain._handle.sample(handle, slot.output)
                        finish: FinishReason | None = None
                        if vocab.is_eog(token):
                            finish = "eog"
                        else:
                            slot.generated.append(token)
                            piece = slot.assembler.feed(vocab.piece(token, False))
                            if piece:
                                with turn.paused():
                                    yield slot.index, piece
                            if slot.assembler.stopped:
                                finish = "stop"
                            elif len(slot.generated) >= limit or \
                                    len(slot.prompt) + len(slot.generated) > handle.n_ctx_seq:
                                finish = "length"
                        if finish is None:
                            slot.pending = token
                        else:
                            active.remove(slot)
                            yield from turn.relay(
                                self._finish(slot, finish, results, free, params))
            finally:
                batch.close()
                for slot in active:
                    slot.chain.close()
                # an abandoned stream's cache belongs to another call now; a closed
                # context has none left
                if not turn.abandoned and not handle.closed:
                    memory.kv_clear(handle)

    def _finish(self, slot: _Slot, finish: FinishReason, results: list[GenerationResult | None],
                free: list[int], params: SamplingParams) -> Iterator[tuple[int, str]]:
        rest = slot.assembler.finish()
        if rest:
            yield slot.index, rest
        memory.kv_remove(self._handle, slot.seq_id, -1, -1)
        free.append(slot.seq_id)
        slot.chain.close()
        now = time.perf_counter()
        prompt_done = slot.prompt_done or now
        results[slot.index] = GenerationResult(
            text=slot.assembler.text, tokens=slot.generated, finish_reason=finish,
            timings=Timings(prompt_tokens=len(slot.prompt), prompt_tokens_cached=0,
                            prompt_ms=(prompt_done - slot.started) * 1000,
                            generated_tokens=len(slot.generated),
                            generated_ms=(now - prompt_done) * 1000,
                            total_ms=(now - slot.started) * 1000),
            prompt_tokens=slot.prompt, seed=None if params.greedy else slot.seed)
