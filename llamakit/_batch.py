"""Batched generation: the stepping core (``BatchStepper``) and ``Context.generate_batch``.

Each generating sequence is a ``BatchSlot``: a sequence id of the context, its own sampler
chain, its text assembler (stop strings) and limits. ``BatchStepper.step`` puts one pending
token of each generating slot and as much prompt as fits into one ``llama_batch``, decodes
it, samples every slot that has logits and reports pieces and finished slots. The driver
decides which slots join between steps: ``generate_batch`` admits queued prompts as slots
free up, the ``Engine`` admits requests from other threads the same way (continuous
batching), so both share this one scheduler.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from ._context_core import ContextCore, Prompt
from ._context_text import TextAssembler, stop_strings
from ._errors import ClosedError, ConfigError, ContextOverflowError, EmptyPromptError
from ._logprobs import check_logprobs
from ._native import memory
from ._native.batch import BatchHandle
from ._native.batch_run import BatchRun
from ._native.logits import LogprobRecorder
from ._native.sample_step import StepSampler
from ._native.sampler import detach_backend, try_attach_backend
from ._results import FinishReason, GenerationResult, Timings
from ._sampler_chain import SamplerChain
from ._sampling import random_seed

if TYPE_CHECKING:
    from ._native.context import ContextHandle
    from ._sampling import SamplingParams

__all__ = ["BatchMixin", "BatchSlot", "BatchStepper", "BatchStream", "StepEvent", "new_recorder",
           "starts_ahead"]


@dataclass(eq=False)
class BatchSlot:
    """One sequence being generated. ``fed`` prompt tokens are in the KV cache already
    (a reused prefix starts there); ``kv`` lists every token the sequence holds."""

    seq_id: int
    prompt: list[int]
    chain: SamplerChain
    assembler: TextAssembler
    limit: int
    seed: int
    started: float
    owner: Any = None
    fed: int = 0
    cached: int = 0
    pending: int | None = None
    output: int | None = None
    prompt_done: float = 0.0
    first_token: float = 0.0
    generated: list[int] = field(default_factory=list)
    kv: list[int] = field(default_factory=list)
    finish: FinishReason | None = None
    #: More token ids that end the sequence as end-of-generation does (a chat template's
    #: end-of-turn tokens), and control tokens whose text is kept (tool-call markers).
    stop_tokens: frozenset[int] = frozenset()
    preserved_tokens: frozenset[int] = frozenset()
    #: Set when the request asked for ``logprobs``: an entry per generated token, read
    #: from this slot's own output row right after its sample.
    recorder: LogprobRecorder | None = None

    def piece(self, text: str) -> str:
        """``text`` as the slot's caller gets it: a ``StreamPiece`` carrying the entries
        of the tokens it completes when log-probabilities are recorded."""
        return text if self.recorder is None or not text else self.recorder.piece(text)

    def rest(self) -> str:
        """The held-back text once the slot has finished (``assembler.finish``)."""
        return self.piece(self.assembler.finish())

    def result(self, show_seed: bool) -> GenerationResult:
        """The ``GenerationResult`` of a finished slot (call after ``assembler.finish``)."""
        assert self.finish is not None
        now = time.perf_counter()
        prompt_done = self.prompt_done or now
        return GenerationResult(
            text=self.assembler.text, tokens=self.generated, finish_reason=self.finish,
            timings=Timings(prompt_tokens=len(self.prompt), prompt_tokens_cached=self.cached,
                            prompt_ms=(prompt_done - self.started) * 1000,
                            generated_tokens=len(self.generated),
                            generated_ms=(now - prompt_done) * 1000,
                            total_ms=(now - self.started) * 1000),
            prompt_tokens=self.prompt, seed=self.seed if show_seed else None,
            logprobs=None if self.recorder is None else self.recorder.entries)


#: ``(slot, piece)``: a text piece of a slot (``""`` when only its state changed); a
#: finished slot has ``finish`` set and is no longer active.
StepEvent = tuple[BatchSlot, str]


_seq_id = attrgetter("seq_id")


def starts_ahead(model: Any) -> bool:
    """Whether a batch step on ``model`` should start its next decode before its text work:
    every layer on a CUDA device, whose ``llama_decode`` returns while the GPU computes.
    On the CPU (and a partial offload, whose CPU layers compute inside ``llama_decode``)
    the text work would wait for a whole decode; the other backends are not measured."""
    offload = model.offload
    return bool(offload.backend == "cuda" and offload.n_layers_total > 0
                and offload.n_layers_offloaded == offload.n_layers_total)


class BatchStepper:
    """The active slots of one context and one decode step over all of them.

    The caller holds the context's lock around ``step`` and owns the sequence ids: it
    passes free ids to ``add`` and gets them back from finished slots.
    """

    def __init__(self, handle: ContextHandle, vocab: Any, ahead: bool = False) -> None:
        self._handle = handle
        self._vocab = vocab
        #: Whether ``step`` may start the next decode before its text work: only where
        #: ``llama_decode`` returns while the device computes (``starts_ahead``); on the
        #: CPU it would hold every step's pieces back by a whole decode.
        self.ahead = ahead
        self.active: list[BatchSlot] = []
        self._batch = BatchHandle(handle.native, handle.n_batch)
        self._sampler = StepSampler(handle)
        # Sequences with a chain attached for backend sampling. A finished slot's stays
        # attached (unused) until another slot takes the sequence or the stepper closes:
        # every attach or detach makes llama.cpp re-reserve its graphs at the next decode.
        self._in_graph: set[int] = set()
        # A decode started by ``step`` ahead of the next one, whose outputs it samples.
        self._in_flight = False
        #: Whether generated tokens wait while prompts take more than one decode
        #: (``_launch``): those prompts are fed first, then every sequence steps together,
        #: as llama-batched-bench runs. Mixed steps split into ragged ubatches (one KV
        #: stream per sequence: split_equal) and start the sequences some steps apart, so
        #: the last steps run part-full. A prompt that fits beside them still joins the
        #: generated tokens. Off for the engine, whose streams must not wait for a long
        #: new prompt (it takes ``wave``).
        self.lockstep = False
        #: The engine's lockstep: the generated tokens wait as with ``lockstep`` only while
        #: every generating slot has just its first token (a burst of requests that arrived
        #: together is fed as llama-batched-bench feeds it) and the prompts waiting fit
        #: four decodes; a stream that has gone further never waits for a new prompt.
        self.wave = False
        #: Whether ``step`` reports pieces; False (``generate_batch``, which reads only the
        #: results): its events are the finished slots alone, and while every active slot
        #: generates without stop strings or log-probabilities its steps run in C, many a
        #: call (``BatchRun``; with pieces, one step a call).
        self.pieces = True
        self._runs: BatchRun | None = None

    def add(self, slot: BatchSlot, in_graph: bool = False) -> None:
        """Make ``slot`` active; ``in_graph``: llama.cpp samples it inside the decode's
        graph (backend sampling; ``SamplingParams.in_graph``) when it can."""
        handle, seq_id = self._handle, slot.seq_id
        if self._in_flight and (in_graph or seq_id in self._in_graph):
            # The decode started ahead runs the sequence's previous chain (llama.cpp keeps
            # every attached chain in the graph): it must end before that chain is freed.
            handle.synchronize()
        if in_graph and try_attach_backend(handle, seq_id, slot.chain._handle):
            self._in_graph.add(seq_id)
        elif seq_id in self._in_graph:
            self._in_graph.discard(seq_id)
            detach_backend(handle, seq_id)
        self.active.append(slot)

    def remove(self, slot: BatchSlot) -> None:
        self.active.remove(slot)

    def detach_all(self) -> None:
        """Take back every chain attached for backend sampling (before the context runs
        anything else: an attached sequence's outputs have no raw logits)."""
        while self._in_graph:
            seq_id = self._in_graph.pop()
            if not self._handle.closed:
                with contextlib.suppress(ClosedError):
                    detach_backend(self._handle, seq_id)

    def close(self, touch_context: bool = True) -> None:
        """Wait for a decode started ahead and take back attached chains (unless
        ``touch_context`` is False: the context belongs to another call now), then free the
        batch."""
        if touch_context:
            self.drain()
            self.detach_all()
        self._batch.close()

    def _launch(self) -> None:
        """Put one pending token of each generating slot and as much prompt as fits into
        the batch and start its decode (on a GPU, ``llama_decode`` returns while the device
        computes; the next sample waits for it)."""
        handle, batch = self._handle, self._batch
        capacity = batch.capacity
        # The batch's columns, written into the llama_batch in one call (BatchHandle.fill).
        tokens: list[int] = []
        positions: list[int] = []
        seq_ids: list[int] = []
        outputs: list[int] = []
        # In sequence order, as llama-server fills its batch: with one KV stream per
        # sequence llama.cpp splits a batch into ubatches of consecutive sequences
        # (split_equal, sequential), so 2, 3, ..., 15, 0, 1 costs two graph computes.
        ordered = sorted(self.active, key=_seq_id)
        feeding = [slot for slot in ordered if slot.pending is None]
        hold = False
        if (self.lockstep or self.wave) and feeding:
            waiting = sum(len(slot.prompt) - slot.fed for slot in feeding)
            generating = len(ordered) - len(feeding)
            # a prompt cut by the last decode's end: the burst of prompts goes on
            hold = waiting > 0 and (waiting + generating > capacity or any(
                0 < slot.fed < len(slot.prompt) for slot in feeding))
            if hold and not self.lockstep:
                # at most four decodes of prompts before a first token's successor
                hold = waiting <= 4 * capacity and all(
                    len(slot.generated) <= 1 for slot in ordered if slot.pending is not None)
        for slot in ordered:
            slot.output = None
        if not hold:
            generating_slots = [slot for slot in ordered if slot.pending is not None][:capacity]
            tokens = [slot.pending for slot in generating_slots if slot.pending is not None]
            for i, slot in enumerate(generating_slots):
                slot.output = i
                kv = slot.kv
                positions.append(len(kv))
                kv.append(tokens[i])
            seq_ids = [slot.seq_id for slot in generating_slots]
            outputs = [1] * len(tokens)
        for slot in feeding:
            prompt, start = slot.prompt, slot.fed
            end = min(len(prompt), start + capacity - len(tokens))
            if end <= start:
                continue
            chunk = prompt[start:end]
            tokens += chunk
            positions += range(start, end)
            seq_ids += [slot.seq_id] * len(chunk)
            outputs += [0] * len(chunk)
            slot.kv += chunk
            slot.fed = end
            if end == len(prompt):
                outputs[-1] = 1
                slot.output = len(tokens) - 1
        if not tokens:
            return
        batch.fill(tokens, positions, seq_ids, outputs)
        self._in_flight = True
        try:
            batch.decode(handle)
        except BaseException:
            self._in_flight = False
            raise

    def step(self, ahead: bool = True) -> list[StepEvent]:
        """Decode one batch and sample every slot that has logits; finished slots leave
        ``active`` (their ``finish`` is set, their sequence keeps ``slot.kv``).

        When no active slot has stop strings, the step starts the next decode as soon as
        its tokens are sampled and ends of generation (end-of-generation tokens, limits)
        are known, before the text work (pieces, events), so that work overlaps the
        device's: the next ``step`` then begins by sampling that decode. A slot added
        meanwhile joins the decode after it. With stop strings (known only from the text)
        each step decodes, samples and assembles in turn, as with ``ahead=False`` (the
        engine's step before it runs an embedding request on the context).
        """
        handle, vocab = self._handle, self._vocab
        if not self._in_flight:
            self._launch()
        if self._runnable():
            return self._run(ahead)
        self._in_flight = False
        ready = [(slot, slot.output) for slot in self.active if slot.output is not None]
        # Every slot's token and end-of-generation flag in one native call (its piece is
        # read after the next decode has started), except a slot recording post-sampling
        # logprobs: those read the candidates of this thread's last sample, so such a slot
        # samples alone, right before its figures are read. The call spreads the chains
        # over the context's n_threads: the decode's threads have nothing else to do until
        # the next step.
        together = [(slot, output) for slot, output in ready
                    if slot.recorder is None or not slot.recorder.post_sampling]
        tokens, eogs = self._sampler.sample([slot.chain._handle for slot, _ in together],
                                            [output for _, output in together])
        if len(together) != len(ready):
            place = {id(slot): i for i, (slot, _) in enumerate(together)}
            found = [place.get(id(slot), -1) for slot, _ in ready]
        else:
            found = range(len(ready))  # type: ignore[assignment]
        n_ctx_seq = handle.n_ctx_seq
        now = time.perf_counter()
        # What needs this decode's outputs (tokens, log-probabilities) or decides the
        # next decode, before it starts; ``texts``: (slot, token, index of its piece in
        # the sampler's, -1: none) for the text work.
        texts: list[tuple[BatchSlot, int, int]] = []
        active = self.active
        ahead = ahead and self.ahead and not any([slot.assembler.stops for slot in active])
        for (slot, output), j in zip(ready, found, strict=True):
            if slot.pending is None:
                slot.prompt_done = now
            if j < 0:
                token = slot.chain._handle.sample(handle, output)
                eog = vocab.is_eog(token)
            else:
                token, eog = tokens[j], eogs[j]
            if not slot.first_token:
                slot.first_token = now
            slot.pending = token
            if eog or token in slot.stop_tokens:
                slot.finish = "eog"
                continue
            slot.generated.append(token)
            if slot.recorder is not None:
                slot.recorder.record(token, output)
            texts.append((slot, token, j))
            if ahead and (len(slot.generated) >= slot.limit
                          or len(slot.prompt) + len(slot.generated) > n_ctx_seq):
                slot.finish = "length"
        if ahead:
            self.active = [slot for slot in active if slot.finish is None]
            self._launch()
        events: list[StepEvent] = []
        for slot, _ in ready:
            if slot.finish == "eog":
                events.append((slot, ""))
        raws = self._sampler.pieces()
        pieces = self.pieces
        for slot, token, j in texts:
            if j < 0 or token in slot.preserved_tokens:
                raw = vocab.piece(token, token in slot.preserved_tokens)
            else:
                raw = raws[j]
            piece = slot.assembler.feed(raw)
            if slot.recorder is not None:
                piece = slot.piece(piece)
            if not ahead:
                if slot.assembler.stopped:
                    slot.finish = "stop"
                elif len(slot.generated) >= slot.limit or \
                        len(slot.prompt) + len(slot.generated) > n_ctx_seq:
                    slot.finish = "length"
            if slot.finish is not None or piece and pieces:
                events.append((slot, piece))
        if not ahead:
            self.active = [slot for slot in self.active if slot.finish is None]
        return events

    def _runnable(self) -> bool:
        """Whether the next steps can run in C: every active slot is in the last decode
        with a token sampled before (its first sample, which times the prompt, is Python's),
        without stop strings (known only from the text) or log-probabilities (read from
        each step's outputs)."""
        return all([slot.pending is not None and slot.output is not None
                    and slot.recorder is None and not slot.assembler.stops
                    for slot in self.active])

    def _run(self, ahead: bool) -> list[StepEvent]:
        """``step`` in one native call (``BatchRun``). Without pieces (``generate_batch``),
        many steps: until a slot ends, and, with ``ahead``, the next decode started for the
        others. With pieces (``stream_batch``, the engine), one step, each token's piece an
        event as the Python step makes it: the sample, the ends and the next decode's start
        (where ``starts_ahead``) happen in C, the text work after, while the GPU computes."""
        runs = self._runs
        if runs is None:
            runs = self._runs = BatchRun(self._handle, self._batch, self._handle.n_seq_max)
        n_ctx_seq = self._handle.n_ctx_seq
        # the run's batches list the sequences in this order: ascending ids, as _launch's
        # (llama.cpp puts consecutive ids into one ubatch; compact may have renumbered
        # them since the decode in flight, whose rows each slot's output still names)
        slots = sorted(self.active, key=_seq_id)
        rows = [slot.output for slot in slots if slot.output is not None]  # all (_runnable)
        budgets = [min(slot.limit - len(slot.generated),
                       n_ctx_seq + 1 - len(slot.prompt) - len(slot.generated))
                   for slot in slots]
        self._in_flight = False
        pieces = self.pieces
        done, seqs, error = runs.run(
            [slot.chain._handle for slot in slots], rows, [slot.seq_id for slot in slots],
            [len(slot.kv) for slot in slots], budgets,
            [slot.stop_tokens for slot in slots], [slot.preserved_tokens for slot in slots],
            1 if pieces else max(budgets), ahead and (self.ahead or not pieces))
        vocab = self._vocab
        events: list[StepEvent] = []
        in_flight = False
        for slot, seq in zip(slots, seqs, strict=True):
            tokens = seq.tokens
            if not tokens:
                slot.output = None
                continue
            token = slot.pending = tokens[-1]
            slot.generated += tokens[:-1] if seq.finish == 1 else tokens
            slot.kv += tokens[:seq.decoded]
            data = seq.pieces
            if seq.missing:
                data += vocab.piece(token, token in slot.preserved_tokens)
            piece = slot.assembler.feed(data) if data else ""
            slot.output = seq.output if seq.output >= 0 else None
            in_flight = in_flight or seq.output >= 0
            if seq.finish:
                slot.finish = "eog" if seq.finish == 1 else "length"
                events.append((slot, piece))
            elif piece and pieces:
                events.append((slot, piece))
        self._in_flight = in_flight
        self.active = [slot for slot in self.active if slot.finish is None]
        if error is not None:
            raise error
        return events

    def compact(self, free: list[int]) -> None:
        """Move the sequences with the highest ids into the lowest ``free`` ids below them
        (``free`` updated), so that the active ids form one block.

        With a KV stream per sequence llama.cpp splits a batch into ubatches of consecutive
        sequence ids (``split_equal``, sequential): when a sequence in the middle ends, every
        later step costs two graph computes, each reading every weight (on the VM, 16
        sequences in two blocks took 1.45x the time a step of one block did). A move is
        ``seq_cp`` of the whole stream (llama.cpp copies the buffers at the next decode,
        after synchronizing) and ``seq_rm`` of the old id; the slot keeps its chain, its
        tokens and its output row. Not with a unified cache (one stream: any ids share a
        ubatch), nor where a backend-sampling chain is attached to either id."""
        handle = self._handle
        if handle.kv_unified or not free or not self.active:
            return
        while True:
            top = max(self.active, key=_seq_id)
            low = min(free)
            # a backend-sampling chain is attached by id (a finished slot's stays until
            # its id is taken: BatchStepper.add detaches it then)
            if low > top.seq_id or top.seq_id in self._in_graph or low in self._in_graph:
                return
            memory.kv_copy(handle, top.seq_id, low, -1, -1)
            memory.kv_remove(handle, top.seq_id, -1, -1)
            free.remove(low)
            free.append(top.seq_id)
            top.seq_id = low

    @property
    def in_flight(self) -> bool:
        """Whether a decode started ahead waits to be sampled by the next ``step``."""
        return self._in_flight

    def drain(self) -> None:
        """Wait for a decode started ahead (``step``) to finish, its outputs unread: before
        the context's memory or sequences change under it."""
        if self._in_flight:
            self._in_flight = False
            if not self._handle.closed:
                with contextlib.suppress(ClosedError):
                    self._handle.synchronize()


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
                     logprobs: int | None = None, post_sampling_probs: bool = False,
                     **sampling: Any) -> BatchStream:
        """Like ``generate_batch`` but yields ``(index, piece)`` as pieces are ready (with
        ``logprobs``, each piece is a ``StreamPiece``)."""
        return self._batch_stream(prompts, max_new_tokens, stop, parse_special, logprobs,
                                  post_sampling_probs, sampling, pieces=True)

    def _batch_stream(self, prompts: Sequence[Prompt], max_new_tokens: int | None,
                      stop: str | Sequence[str] | None, parse_special: bool,
                      logprobs: int | None, post_sampling_probs: bool,
                      sampling: dict[str, Any], *, pieces: bool) -> BatchStream:
        """``stream_batch``; ``pieces`` False: the events carry no pieces (``generate_batch``
        reads only the results, and keeps the context's gate for the whole call)."""
        top = check_logprobs(logprobs, post_sampling_probs)
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
        events = self._batch_loop(token_lists, limit, stops, params, results,
                                  (top, post_sampling_probs), pieces)
        return BatchStream(events, results)

    def generate_batch(self, prompts: Sequence[Prompt], *, max_new_tokens: int | None = None,
                       stop: str | Sequence[str] | None = None, parse_special: bool = True,
                       logprobs: int | None = None, post_sampling_probs: bool = False,
                       **sampling: Any) -> list[GenerationResult]:
        """Generate a completion of each prompt, decoding the sequences together.

        Takes ``generate()``'s keywords; stop strings and ``max_new_tokens`` apply to each
        sequence. With a fixed ``seed`` sequence ``i`` samples with ``seed + i``. The
        context needs ``n_seq_max`` slots (``model.new_context(n_seq_max=8)``); more
        prompts than slots are queued. Results come back in the order of ``prompts``.
        ``logprobs``/``post_sampling_probs`` as in ``generate``: each result's ``logprobs``.
        """
        stream = self._batch_stream(prompts, max_new_tokens, stop, parse_special, logprobs,
                                    post_sampling_probs, sampling, pieces=False)
        for _ in stream:
            pass
        return stream.results

    def _batch_loop(self, token_lists: list[list[int]], limit: int, stops: list[str],
                    params: SamplingParams, results: list[GenerationResult | None],
                    logprobs: tuple[int | None, bool] = (None, False), pieces: bool = True
                    ) -> Iterator[tuple[int, str]]:
        handle, model = self._handle, self.model
        base_seed = params.values.get("seed")
        with self._lock.stream() as turn:
            handle.set_abort(False)
            self._cache.clear()
            queue = deque(enumerate(token_lists))
            free = list(range(handle.n_seq_max))
            stepper = BatchStepper(handle, model._handle, starts_ahead(model))
            # generate_batch: throughput over the whole call; stream_batch: the first
            # pieces of the first sequences come as soon as their prompts are in.
            stepper.lockstep = not pieces
            stepper.pieces = pieces
            try:
                while queue or stepper.active:
                    while queue and free:
                        index, tokens = queue.popleft()
                        seed = (base_seed + index) % 0xFFFFFFFF if base_seed is not None \
                            else random_seed()
                        stages = params.stages(seed, handle.n_ctx)
                        chain = SamplerChain.from_stages(model, stages)
                        chain._start(tokens)
                        # the lowest free id: the active ids stay one block (compact)
                        free.sort()
                        slot = BatchSlot(seq_id=free.pop(0), prompt=tokens, chain=chain,
                                         assembler=TextAssembler(stops), limit=limit,
                                         seed=seed, started=time.perf_counter(), owner=index,
                                         recorder=new_recorder(handle, model._handle,
                                                               *logprobs))
                        if limit == 0:
                            slot.finish = "length"
                            yield from self._finished(turn, slot, results, free, params,
                                                      pieces)
                            continue
                        stepper.add(slot, params.in_graph(stages, logprobs[0]))
                    if not stepper.active:
                        continue
                    # Prompts still queued join as slots free up: start no decode ahead
                    # then, or they would wait a step longer for it.
                    for slot, piece in stepper.step(ahead=not queue):
                        if piece and pieces:
                            with turn.paused():
                                yield slot.owner, piece
                        if slot.finish is not None:
                            yield from self._finished(turn, slot, results, free, params,
                                                      pieces)
                    if not queue:
                        stepper.compact(free)
            finally:
                # an abandoned stream must not touch the context (the call that took it
                # over detached its chains: ContextCore._undo_abandoned)
                stepper.close(touch_context=not turn.abandoned)
                for slot in stepper.active:
                    slot.chain.close()
                # an abandoned stream's cache belongs to another call now; a closed
                # context has none left
                if not turn.abandoned and not handle.closed:
                    memory.kv_clear(handle)

    def _finished(self, turn: Any, slot: BatchSlot, results: list[GenerationResult | None],
                  free: list[int], params: SamplingParams, pieces: bool
                  ) -> Iterator[tuple[int, str]]:
        """``_finish``: its last piece relayed to the caller, or dropped without pieces."""
        if pieces:
            yield from turn.relay(self._finish(slot, results, free, params))
        else:
            for _ in self._finish(slot, results, free, params):
                pass

    def _finish(self, slot: BatchSlot, results: list[GenerationResult | None],
                free: list[int], params: SamplingParams) -> Iterator[tuple[int, str]]:
        rest = slot.rest()
        if rest:
            yield slot.owner, rest
        memory.kv_remove(self._handle, slot.seq_id, -1, -1)
        free.append(slot.seq_id)
        slot.chain.close()
        results[slot.owner] = slot.result(show_seed=not params.greedy)


def new_recorder(handle: ContextHandle, model: Any, top: int | None, post_sampling: bool
                 ) -> LogprobRecorder | None:
    """A slot's recorder when ``logprobs`` (``top``, already checked) was asked for."""
    return None if top is None else LogprobRecorder(handle, model, top, post_sampling)
