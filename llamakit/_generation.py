"""``Context.generate`` and ``Context.stream``: one prompt, one sampler chain, sequence 0.

The prompt is brought into sequence 0 through the ``PromptCache`` (reusing the prefix the
previous call left), then tokens are sampled and decoded one at a time until an
end-of-generation token, a stop string, ``max_new_tokens`` or a full context.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._config.fields import check_field
from ._config.schema import SamplingConfig
from ._context_core import ContextCore, Prompt
from ._context_text import TextAssembler, stop_strings
from ._determinism import wants_exact
from ._errors import ConfigError, ContextOverflowError, SamplerError
from ._logprobs import check_logprobs
from ._native.logits import LogprobRecorder
from ._native.sampler import park_backend, try_attach_backend
from ._native.step import Step, TokenRun, TokenStep
from ._overflow import OverflowPolicy, check_policy
from ._results import FinishReason, GenerationResult, TextStream, Timings
from ._sampler_chain import SamplerChain
from ._sampling import SamplingParams, Stage, random_seed

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._sampling import SamplingKwargs

__all__ = ["Generation"]


def _settings_key(stages: Sequence[Stage]) -> str:
    """What a parked device chain must match to be reused (``park_backend``): every stage's
    settings but the random stage's seed, whose generator ``lk_backend_sampler_rebind``
    copies with the rest of the chain's state."""
    return repr([(s.name, sorted((k, v) for k, v in s.params.items()
                                 if not (s.name == "dist" and k == "seed")))
                 for s in stages])


def _spare_key(stages: Sequence[Stage]) -> str | None:
    """What the context's spare chain (the previous call's, kept instead of freed) must
    match to serve a call: every stage's settings, seeds included, so that after its
    ``reset`` it is the chain ``from_stages`` would build. None where a reset may not bring
    a chain back to that: a grammar, a Python stage."""
    if any(s.sampler is not None or s.name == "grammar" for s in stages):
        return None
    return repr([(s.name, sorted(s.params.items())) for s in stages])


class Generation(ContextCore):
    """``generate`` and ``stream`` of ``Context``."""

    def _prepare(self, prompt: Prompt, max_new_tokens: int | None,
                 stop: str | Sequence[str] | None, parse_special: bool,
                 sampling: Mapping[str, Any], sampler: SamplerChain | None, where: str,
                 on_overflow: OverflowPolicy, n_keep: int, n_ctx: int | None = None
                 ) -> tuple[list[int], int, list[str], SamplingParams, int | None,
                            OverflowPolicy, int, bool]:
        """Validate a call's arguments: the prompt's tokens, the token limit, the stop
        strings, the sampling parameters and seed, the overflow policy and whether the call
        runs in deterministic mode. ``n_ctx`` is the room of the sequence (default: the
        context's)."""
        if max_new_tokens is None:
            max_new_tokens = self.max_new_tokens
        max_new_tokens = check_field(SamplingConfig, "max_new_tokens", max_new_tokens)
        stops = stop_strings(self.stop if stop is None else stop)
        seed: int | None
        if sampler is not None:
            if sampling:
                raise SamplerError(f"{where}: give either sampler= or sampling keywords "
                                   f"({', '.join(sorted(sampling))}), not both")
            if not isinstance(sampler, SamplerChain):
                raise SamplerError(f"sampler must be a llamakit.SamplerChain, got {sampler!r}")
            sampler._check_context(self)
            params, seed = SamplingParams(), sampler.seed
            # a chain carries its seed, so its output is meant to be reproducible
            exact = wants_exact(self.deterministic, greedy=False, seeded=True)
        else:
            params = self._sampling(sampling, where)
            chosen = params.values.get("seed")
            seed = chosen if chosen is not None else random_seed()
            exact = wants_exact(self.deterministic, greedy=params.greedy,
                                seeded=chosen is not None)
        room = self.n_ctx if n_ctx is None else n_ctx
        on_overflow, n_keep = check_policy(on_overflow, n_keep, room)
        if on_overflow == "shift" and not self.kv.can_shift:
            raise ConfigError("on_overflow='shift' needs a model whose KV cache can shift "
                              "positions; use 'truncate'", key="on_overflow")
        tokens = self._prompt_tokens(prompt, parse_special, on_overflow, n_keep, room)
        return tokens, max_new_tokens, stops, params, seed, on_overflow, n_keep, exact

    def _run(self, prompt: Prompt, max_new_tokens: int | None, stop: str | Sequence[str] | None,
             parse_special: bool, sampling: Mapping[str, Any],
             sampler: SamplerChain | None = None, where: str = "generate()",
             on_overflow: OverflowPolicy = "error", n_keep: int = 0,
             stop_tokens: Sequence[int] = (), preserved_tokens: Sequence[int] = (),
             logprobs: int | None = None, post_sampling_probs: bool = False,
             pieces: bool = True) -> Iterator[str | GenerationResult]:
        logprobs = check_logprobs(logprobs, post_sampling_probs)
        tokens, limit, stops, params, seed, on_overflow, n_keep, exact = self._prepare(
            prompt, max_new_tokens, stop, parse_special, sampling, sampler, where,
            on_overflow, n_keep)
        return self._loop(tokens, limit, stops, params, seed, self.model._handle, sampler,
                          on_overflow, n_keep, exact, frozenset(int(t) for t in stop_tokens),
                          frozenset(int(t) for t in preserved_tokens), logprobs,
                          post_sampling_probs, pieces)

    def _loop(self, prompt: list[int], max_new_tokens: int, stops: list[str],
              params: SamplingParams, seed: int | None, model_handle: Any,
              chain: SamplerChain | None = None, on_overflow: OverflowPolicy = "error",
              n_keep: int = 0, exact: bool = False, stop_tokens: frozenset[int] = frozenset(),
              preserved_tokens: frozenset[int] = frozenset(), logprobs: int | None = None,
              post_sampling_probs: bool = False, pieces: bool = True
              ) -> Iterator[str | GenerationResult]:
        """Yields the text pieces (unless ``pieces`` is False: ``generate`` reads only the
        result, and keeps the context's gate for the whole call instead of handing it
        back between tokens), then the ``GenerationResult``."""
        handle = self._handle
        with self._lock.stream() as turn:
            handle.set_abort(False)
            handle.reset_perf()
            started = time.perf_counter()
            owned = chain is None
            in_graph = False
            key = ""
            spare_key: str | None = None
            completed = False
            if chain is None:
                assert seed is not None
                stages = params.stages(seed, handle.n_ctx)
                in_graph = params.in_graph(stages, logprobs)
                if in_graph:
                    key = _settings_key(stages)
                else:
                    # building and freeing a chain per call was a sixth of generate's own
                    # host time: a call with the previous call's settings reuses its chain
                    spare_key = _spare_key(stages)
                chain = self._take_spare(spare_key)
                if chain is None:
                    chain = SamplerChain.from_stages(self.model, stages)
            else:
                seed = chain.seed
            try:
                chain._start(prompt)
                sampler = chain._handle
                # backend_sampling: llama.cpp samples sequence 0 in the decode's graph from
                # the prompt's last token on (False: it cannot, the host samples); the
                # previous call's chain, parked, is reused when built the same way
                in_graph = in_graph and max_new_tokens > 0 and \
                    try_attach_backend(handle, 0, sampler, key=key)
                cache = self._cache
                cached = (cache.evaluate(prompt, handle.n_batch, exact)
                          if max_new_tokens > 0 else 0)
                prompt_done = time.perf_counter()
                generated: list[int] = []
                assembler = TextAssembler(stops)
                finish: FinishReason = "length"
                n_ctx = handle.n_ctx
                overflowed = False
                recorder = None if logprobs is None else LogprobRecorder(
                    handle, model_handle, logprobs, post_sampling_probs)
                paused = turn.paused()
                # One TokenStep call a token: it pins the context and the chain once for
                # the decode of the last token and the sample of the next (one native call
                # for the token, its end-of-generation flag and its piece).
                step = TokenStep(handle, sampler)
                token, eog, piece = step.sample() if max_new_tokens > 0 else (0, True, b"")
                held = len(cache)  # tokens in sequence 0: advance adds one, shift drops some
                # generate() (no pieces to hand out between tokens, no per-token logits to
                # read): the tokens come from native runs of many (TokenRun) and go through
                # the same checks below, the run stopping where these would at the latest.
                # Not for a stop string holding U+FFFD (matched in decoded text only).
                runner = TokenRun(handle, sampler, stop_tokens, preserved_tokens, stops) \
                    if not pieces and recorder is None and max_new_tokens > 1 \
                    and not any("\ufffd" in s for s in stops) else None
                ran: list[Step] = []
                at = 0
                while max_new_tokens > 0:
                    # stop_tokens: a chat template's end-of-turn tokens that the vocabulary
                    # does not flag as end-of-generation (they end the reply all the same).
                    if eog or token in stop_tokens:
                        finish = "eog"
                        break
                    generated.append(token)
                    if recorder is not None:
                        recorder.record(token)
                    # preserved_tokens: control tokens whose text the output keeps (tool-call
                    # markers that llama.cpp's chat parsers look for).
                    if token in preserved_tokens:
                        piece = model_handle.piece(token, True)
                    ready = assembler.feed(piece)
                    if ready and pieces:
                        with paused:
                            yield ready if recorder is None else recorder.piece(ready)
                    if assembler.stopped:
                        finish = "stop"
                        break
                    if len(generated) >= max_new_tokens:
                        break
                    if held >= n_ctx:
                        if on_overflow != "shift":
                            overflowed = on_overflow == "error"
                            break
                        cache.shift(n_keep)
                        held = len(cache)
                    if runner is None:
                        token, eog, piece = cache.advance(step, token)
                    else:
                        if at == len(ran):
                            ran = cache.run(runner, token,
                                            min(max_new_tokens - len(generated), n_ctx - held),
                                            assembler.tail())
                            at = 0
                        token, eog, piece = ran[at]
                        at += 1
                    held += 1
                if at < len(ran):
                    # the run decoded past where the checks stopped (they should agree)
                    cache.drop_last(len(ran) - at)
                rest = assembler.finish()
                if rest and pieces:
                    with turn.paused():
                        yield rest if recorder is None else recorder.piece(rest)
                finished = time.perf_counter()
                timings = Timings(
                    prompt_tokens=len(prompt), prompt_tokens_cached=cached,
                    prompt_ms=(prompt_done - started) * 1000, generated_tokens=len(generated),
                    generated_ms=(finished - prompt_done) * 1000,
                    total_ms=(finished - started) * 1000, native=handle.perf())
                result = GenerationResult(text=assembler.text, tokens=generated,
                                          finish_reason=finish, timings=timings,
                                          prompt_tokens=prompt,
                                          seed=None if owned and params.greedy else seed,
                                          logprobs=None if recorder is None
                                          else recorder.entries)
                if overflowed:
                    error = ContextOverflowError(len(prompt) + len(generated), n_ctx,
                                                 what="prompt and generated text")
                    error.result = result
                    raise error
                completed = True
                with turn.paused():
                    yield result
            finally:
                # an abandoned stream must not touch the context: the call that took it
                # over detached the chain (ContextCore._undo_abandoned). Otherwise the chain
                # stays attached for the next call with the same settings: attaching anew
                # makes llama.cpp re-reserve its graphs (the next other decode detaches it).
                if in_graph and not turn.abandoned and not handle.closed:
                    park_backend(handle, 0, key)
                if owned:
                    if spare_key is not None and completed and not turn.abandoned \
                            and not handle.closed:
                        self._park_spare(spare_key, chain)
                    else:
                        chain.close()

    def _take_spare(self, key: str | None) -> SamplerChain | None:
        """The spare chain if it was built as ``key`` says (None: build one); a spare of
        other settings is freed. Called with the context's gate held, as ``_park_spare``."""
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        if key is not None and spare[0] == key and not spare[1].closed:
            return spare[1]
        spare[1].close()
        return None

    def _park_spare(self, key: str, chain: SamplerChain) -> None:
        previous, self._spare = self._spare, (key, chain)
        if previous is not None:
            previous[1].close()

    def generate(self, prompt: Prompt, *, max_new_tokens: int | None = None,
                 stop: str | Sequence[str] | None = None, parse_special: bool = True,
                 sampler: SamplerChain | None = None, on_overflow: OverflowPolicy = "error",
                 n_keep: int = 0, stop_tokens: Sequence[int] = (),
                 preserved_tokens: Sequence[int] = (), logprobs: int | None = None,
                 post_sampling_probs: bool = False,
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
        ``stop_tokens``: more token ids that end generation as an end-of-generation token
        does (``"eog"``; ``chat`` passes its template's end-of-turn tokens);
        ``preserved_tokens``: control tokens whose text stays in the output (tool-call
        markers). ``logprobs`` (0..20) gives every generated token its log-probability and
        that many best alternatives in ``result.logprobs``: the model's distribution, or with
        ``post_sampling_probs=True`` the one the sampler chain drew from (see the guide
        "Log-probabilities, logits and perplexity").
        """
        result: GenerationResult | None = None
        for item in self._run(prompt, max_new_tokens, stop, parse_special, sampling, sampler,
                              "generate()", on_overflow, n_keep, stop_tokens,
                              preserved_tokens, logprobs, post_sampling_probs, pieces=False):
            if isinstance(item, GenerationResult):
                result = item
        assert result is not None
        return result

    def stream(self, prompt: Prompt, *, max_new_tokens: int | None = None,
               stop: str | Sequence[str] | None = None, parse_special: bool = True,
               sampler: SamplerChain | None = None, on_overflow: OverflowPolicy = "error",
               n_keep: int = 0, stop_tokens: Sequence[int] = (),
               preserved_tokens: Sequence[int] = (), logprobs: int | None = None,
               post_sampling_probs: bool = False,
               **sampling: Unpack[SamplingKwargs]) -> TextStream:
        """Like ``generate`` but yields text pieces as they are produced.

        A multi-byte character is never split across pieces, and text that might begin a
        stop string is held back until it is known not to. After the loop the stream's
        ``result`` holds the ``GenerationResult``. With ``logprobs``, each piece is a
        ``StreamPiece`` (a ``str``) whose ``logprobs`` are those of the tokens it completes.
        """
        return TextStream(self._run(prompt, max_new_tokens, stop, parse_special, sampling,
                                    sampler, "stream()", on_overflow, n_keep, stop_tokens,
                                    preserved_tokens, logprobs, post_sampling_probs))
