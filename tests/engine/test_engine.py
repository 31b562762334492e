"""The engine's scheduling: greedy output equal to ``Context.generate``, submission from many
threads, per-request limits, cancellation, the queue limit, closing, and typed errors."""

from __future__ import annotations

import threading

import pytest
from engine_helpers import no_eog, reference

import llamakit

PROMPTS = ["Hello world", "The quick brown fox jumps over the lazy dog and runs away",
           "A", "Once upon a time in a land far away there lived", "1 2 3 4 5 6 7 8 9",
           "Good morning", "What is the capital of France?", "In the beginning"]


def test_greedy_equals_context_generate(model: llamakit.Model,
                                        engine: llamakit.Engine) -> None:
    """Requests of different prompt lengths and limits, running together on four slots with
    more queued, each give exactly what Context.generate gives on a fresh context."""
    limits = [12, 3, 20, 7, 1, 15, 9, 5]
    requests = [engine.submit(p, max_new_tokens=n, temperature=0)
                for p, n in zip(PROMPTS, limits, strict=True)]
    for prompt, n, request in zip(PROMPTS, limits, requests, strict=True):
        result = request.result()
        expected = reference(model, prompt, n)
        assert result.tokens == expected.tokens
        assert result.text == expected.text
        assert result.finish_reason == expected.finish_reason
        assert result.prompt_tokens == expected.prompt_tokens
    stats = engine.stats()
    assert stats.requests_total == len(PROMPTS)
    assert stats.generated_tokens_total == sum(len(r.result().tokens) for r in requests)
    assert stats.slots_busy == 0 and stats.queue_depth == 0


def test_token_prompts_and_stream_pieces(model: llamakit.Model,
                                         engine: llamakit.Engine) -> None:
    """tokens= prompts work; iterating a request yields pieces that join into its text."""
    tokens = model.tokenize(PROMPTS[1])
    request = engine.submit(tokens=tokens, max_new_tokens=10, temperature=0)
    pieces = list(request)
    result = request.result()
    assert "".join(pieces) == result.text
    assert result.tokens == reference(model, tokens, 10).tokens
    assert list(request) == []  # an exhausted request stays exhausted


def test_submission_from_many_threads(model: llamakit.Model,
                                      engine: llamakit.Engine) -> None:
    """Eight threads submitting at once all get their own, correct results."""
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            request = engine.submit(PROMPTS[i], max_new_tokens=6 + i, temperature=0)
            results[i] = request.result(timeout=120).tokens
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(PROMPTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for i, prompt in enumerate(PROMPTS):
        assert results[i] == reference(model, prompt, 6 + i).tokens


def test_per_request_stop_and_sampling(model: llamakit.Model,
                                       engine: llamakit.Engine) -> None:
    """Each request keeps its own stop strings and sampler: a stop string ends only its
    request, and a seeded sampled request is reproducible next to greedy ones."""
    full = reference(model, PROMPTS[0], 16)
    stop = full.text[3:6]
    stopped = engine.submit(PROMPTS[0], max_new_tokens=16, temperature=0, stop=[stop])
    plain = engine.submit(PROMPTS[0], max_new_tokens=16, temperature=0)
    sampled = [engine.submit(PROMPTS[2], max_new_tokens=8, temperature=1.0, seed=7)
               for _ in range(2)]
    assert stopped.result().finish_reason == "stop"
    assert stop not in stopped.result().text
    assert plain.result().tokens == full.tokens
    assert sampled[0].result().tokens == sampled[1].result().tokens
    assert sampled[0].result().seed == 7


def test_cancel_frees_the_slot(model: llamakit.Model) -> None:
    """A cancelled running request ends with AbortedError, its slot is free again and the
    request next to it is not disturbed."""
    with llamakit.Engine(model, n_parallel=2, n_ctx=8192, n_batch=64, n_threads=2) as eng:
        long = eng.submit(PROMPTS[0], max_new_tokens=4000, temperature=0,
                          logit_bias=no_eog(model))
        other = eng.submit(PROMPTS[1], max_new_tokens=12, temperature=0)
        next(iter(long))  # it is running
        long.cancel()
        with pytest.raises(llamakit.AbortedError):
            long.result()
        assert long.cancelled and long.done
        assert other.result().tokens == reference(model, PROMPTS[1], 12).tokens
        stats = eng.stats()
        assert stats.requests_cancelled == 1
        assert stats.slots_busy == 0
        assert stats.generated_tokens_total < 4000 + 12
        after = eng.submit(PROMPTS[3], max_new_tokens=5, temperature=0)
        assert after.result().tokens == reference(model, PROMPTS[3], 5).tokens


def test_result_timeout_cancels(model: llamakit.Model) -> None:
    """A caller that stops waiting (result(timeout)) cancels its request."""
    with llamakit.Engine(model, n_parallel=1, n_ctx=4096, n_batch=64, n_threads=2) as eng:
        request = eng.submit(PROMPTS[0], max_new_tokens=4000, temperature=0,
                             logit_bias=no_eog(model))
        with pytest.raises(TimeoutError):
            request.result(timeout=0.001)
        with pytest.raises(llamakit.AbortedError):
            request.result()
        assert eng.stats().requests_cancelled == 1


def test_queue_full_and_cancelled_queued_request(model: llamakit.Model) -> None:
    """One slot and max_queue=1: a third request is refused with QueueFullError; a cancelled
    queued request leaves the queue without running."""
    with llamakit.Engine(model, n_parallel=1, n_ctx=4096, max_queue=1, n_batch=64,
                         n_threads=2) as eng:
        bias = no_eog(model)
        running = eng.submit(PROMPTS[0], max_new_tokens=4000, temperature=0, logit_bias=bias)
        queued = eng.submit(PROMPTS[1], max_new_tokens=4000, temperature=0, logit_bias=bias)
        with pytest.raises(llamakit.QueueFullError) as refused:
            eng.submit(PROMPTS[2], max_new_tokens=1)
        assert isinstance(refused.value, RuntimeError)
        assert refused.value.retry_after > 0
        queued.cancel()
        with pytest.raises(llamakit.AbortedError):
            queued.result()
        assert queued.slot is None  # it never ran
        running.cancel()
        with pytest.raises(llamakit.AbortedError):
            running.result()
        assert eng.stats().requests_cancelled == 2
        assert eng.submit(PROMPTS[2], max_new_tokens=3, temperature=0).result().tokens == \
            reference(model, PROMPTS[2], 3).tokens


def test_max_queue_zero_refuses_beyond_the_slots(model: llamakit.Model) -> None:
    with llamakit.Engine(model, n_parallel=1, n_ctx=4096, max_queue=0, n_batch=64,
                         n_threads=2) as eng:
        running = eng.submit(PROMPTS[0], max_new_tokens=4000, logit_bias=no_eog(model))
        with pytest.raises(llamakit.QueueFullError):
            eng.submit(PROMPTS[1], max_new_tokens=1)
        running.cancel()


def test_close_without_drain_fails_waiters(model: llamakit.Model) -> None:
    """close(drain=False) ends running and queued requests with EngineClosedError; the
    engine then refuses new requests."""
    eng = llamakit.Engine(model, n_parallel=1, n_ctx=4096, n_batch=64, n_threads=2)
    bias = no_eog(model)
    running = eng.submit(PROMPTS[0], max_new_tokens=4000, logit_bias=bias)
    queued = eng.submit(PROMPTS[1], max_new_tokens=4000, logit_bias=bias)
    next(iter(running))
    eng.close(drain=False)
    for request in (running, queued):
        with pytest.raises(llamakit.EngineClosedError):
            request.result()
    assert eng.closed
    with pytest.raises(llamakit.EngineClosedError):
        eng.submit(PROMPTS[0])
    eng.close()  # twice is fine


def test_close_drains_by_default(model: llamakit.Model) -> None:
    eng = llamakit.Engine(model, n_parallel=2, n_ctx=1024, n_batch=64, n_threads=2)
    requests = [eng.submit(p, max_new_tokens=5, temperature=0) for p in PROMPTS[:5]]
    eng.close()
    for prompt, request in zip(PROMPTS, requests, strict=False):
        assert request.result().tokens == reference(model, prompt, 5).tokens


def test_close_from_another_thread_while_streaming(model: llamakit.Model) -> None:
    """Closing while other threads iterate their requests raises typed errors there, never
    a crash or a hang."""
    eng = llamakit.Engine(model, n_parallel=2, n_ctx=4096, n_batch=64, n_threads=2)
    bias = no_eog(model)
    requests = [eng.submit(p, max_new_tokens=2000, logit_bias=bias) for p in PROMPTS[:4]]
    outcomes: list[BaseException | None] = []

    def read(request: llamakit._engine.Request[llamakit.GenerationResult]) -> None:
        try:
            for _ in request:
                pass
            outcomes.append(None)
        except llamakit.EngineClosedError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=read, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    next(iter(requests[0]))
    eng.close(drain=False)
    for thread in threads:
        thread.join()
    assert len(outcomes) == 4
    assert any(isinstance(o, llamakit.EngineClosedError) for o in outcomes)


def test_prompt_cache_reuse(model: llamakit.Model, engine: llamakit.Engine) -> None:
    """A second turn that extends the first one's prompt and reply evaluates only the new
    tokens, and still equals Context.generate on the whole prompt."""
    first_prompt = model.tokenize(PROMPTS[3])
    first = engine.submit(tokens=first_prompt, max_new_tokens=8, temperature=0).result()
    before = engine.stats().cached_tokens_total
    second_prompt = first_prompt + first.tokens + model.tokenize(" and then", add_special=False)
    second = engine.submit(tokens=second_prompt, max_new_tokens=8, temperature=0).result()
    reused = engine.stats().cached_tokens_total - before
    assert reused == second.timings.prompt_tokens_cached
    assert reused >= len(first_prompt) + len(first.tokens) - 1
    assert second.tokens == reference(model, second_prompt, 8).tokens


def test_similar_prompts_go_to_their_slot(model: llamakit.Model) -> None:
    """Two conversations alternating on two slots each find their own cached prefix."""
    with llamakit.Engine(model, n_parallel=2, n_ctx=1024, n_batch=64, n_threads=2) as eng:
        a = model.tokenize(PROMPTS[1])
        b = model.tokenize(PROMPTS[3] + " " + PROMPTS[6])
        for tokens in (a, b):
            eng.submit(tokens=tokens, max_new_tokens=2, temperature=0).result()
        more = model.tokenize(" yes", add_special=False)
        for tokens in (a, b):
            result = eng.submit(tokens=tokens + more, max_new_tokens=2, temperature=0).result()
            assert result.timings.prompt_tokens_cached == len(tokens)
            assert result.tokens == reference(model, tokens + more, 2).tokens


def test_cache_prompt_off(model: llamakit.Model) -> None:
    with llamakit.Engine(model, n_parallel=2, n_ctx=1024, n_batch=64, n_threads=2,
                         cache_prompt=False) as eng:
        for _ in range(2):
            result = eng.submit(PROMPTS[1], max_new_tokens=3, temperature=0).result()
            assert result.timings.prompt_tokens_cached == 0
        assert eng.stats().cached_tokens_total == 0


def test_overflow_follows_on_overflow(model: llamakit.Model) -> None:
    """A slot's room is n_ctx // n_parallel: a prompt longer than that is refused, and a
    generation that fills it raises ContextOverflowError with the partial result (or ends
    with "length" under on_overflow='truncate')."""
    with llamakit.Engine(model, n_parallel=2, n_ctx=512, n_batch=64, n_threads=2) as eng:
        room = eng.n_ctx_slot
        assert room == 256
        with pytest.raises(llamakit.ContextOverflowError):
            eng.submit(tokens=[1] + [100] * room)
        prompt = [1] + [100] * (room - 5)
        with pytest.raises(llamakit.ContextOverflowError) as overflow:
            eng.submit(tokens=prompt, max_new_tokens=50, logit_bias=no_eog(model)).result()
        partial = overflow.value.result
        assert partial is not None and len(prompt) + len(partial.tokens) == room + 1
        cut = eng.submit(tokens=prompt, max_new_tokens=50, logit_bias=no_eog(model),
                         on_overflow="truncate").result()
        assert cut.finish_reason == "length" and len(cut.tokens) == 5
        assert eng.stats().requests_failed == 1


def test_bad_requests_raise_typed_errors(model: llamakit.Model,
                                         engine: llamakit.Engine) -> None:
    with pytest.raises(llamakit.ConfigError):
        engine.submit(PROMPTS[0], max_new_tokens=-1)
    with pytest.raises(llamakit.ConfigError):
        engine.submit()
    with pytest.raises(llamakit.ConfigError):
        engine.submit(PROMPTS[0], tokens=[1])
    with pytest.raises(llamakit.ConfigError):
        engine.submit(PROMPTS[0], on_overflow="shift")
    with pytest.raises(llamakit.SamplerError):
        engine.submit(PROMPTS[0], temperature="hot")
    with pytest.raises(llamakit.InvalidTokenError):
        engine.submit(tokens=[1, 10**9])
    with pytest.raises(llamakit.EmptyPromptError):
        engine.submit(tokens=[])
    with pytest.raises(llamakit.ContextError):
        engine.submit_embed(["no embeddings here"])
    assert engine.stats().requests_total == 0
    # a refused request leaves the engine working
    assert engine.submit(PROMPTS[0], max_new_tokens=2, temperature=0).result().tokens == \
        reference(model, PROMPTS[0], 2).tokens


def test_engine_parameters_are_validated(model: llamakit.Model) -> None:
    for bad in ({"n_parallel": 0}, {"n_parallel": 300}, {"max_queue": -1},
                {"n_ctx": 0}, {"slot_prompt_similarity": 2.0}, {"cache_prompt": "yes"},
                {"n_seq_max": 2}, {"embeddings": "yes"}):
        with pytest.raises(llamakit.ConfigError):
            llamakit.Engine(model, **bad)  # type: ignore[arg-type]


def test_defaults_come_from_the_schema(model: llamakit.Model) -> None:
    """Unset parameters are the [engine] section's defaults; n_ctx is split over slots."""
    defaults = llamakit.Config().engine
    with llamakit.Engine(model, n_batch=64, n_threads=2) as eng:
        stats = eng.stats()
        assert stats.n_parallel == defaults.n_parallel
        assert stats.max_queue == defaults.max_queue
        assert eng.cache_prompt is defaults.cache_prompt
        train = model.info.n_ctx_train
        assert eng.n_ctx == defaults.n_parallel * min(train, 4096)
        assert eng.n_ctx_slot == eng.n_ctx // defaults.n_parallel


def test_embeddings_engine(model: llamakit.Model) -> None:
    """An embeddings engine packs the texts of its requests like Context.embeddings, and
    refuses generation."""
    texts = ["Hello world", "The quick brown fox", "A B C"]
    with llamakit.Engine(model, n_parallel=4, n_ctx=1024, embeddings=True,
                         n_threads=2) as eng, \
            model.new_context(n_ctx=1024, embeddings=True, n_seq_max=4) as ctx:
        requests = [eng.submit_embed(texts), eng.submit_embed(texts[0])]
        expected = ctx.embeddings(texts)
        got = requests[0].result()
        assert got.shape == expected.shape
        assert abs(got - expected).max() < 1e-4
        assert requests[1].result().shape == expected[0].shape
        with pytest.raises(llamakit.ContextError):
            eng.submit(PROMPTS[0])
        with pytest.raises(llamakit.EmptyPromptError):
            eng.submit_embed([])


def test_embed_requests_are_packed_and_a_bad_one_fails_alone(model: llamakit.Model) -> None:
    """Embed requests (packed into shared decode calls when they wait together) each get
    their own vectors; a text too long for the context fails only its own request."""
    texts = ["Hello world", "The quick brown fox", "A B C", "Good morning"]
    with llamakit.Engine(model, n_parallel=4, n_ctx=1024, embeddings=True,
                         n_threads=2) as eng, \
            model.new_context(n_ctx=256, embeddings=True) as single:
        requests = [eng.submit_embed([t]) for t in texts]
        bad = eng.submit_embed(["word " * 2000])
        for text, request in zip(texts, requests, strict=True):
            assert abs(request.result()[0] - single.embeddings(text)).max() < 1e-4
        with pytest.raises(llamakit.ContextOverflowError):
            bad.result()
        assert eng.stats().requests_failed == 1


def test_engine_from_config(model: llamakit.Model) -> None:
    """[engine], [context] and [sampling] settings reach the engine and its requests."""
    from llamakit._from_config import engine_from_config

    config = llamakit.load_config(engine={"n_parallel": 2, "n_ctx": 512, "max_queue": 3},
                                  context={"n_batch": 64, "n_threads": 2},
                                  sampling={"max_new_tokens": 4, "temperature": 0.0})
    with engine_from_config(model, config) as eng:
        stats = eng.stats()
        assert (stats.n_parallel, stats.max_queue, eng.n_ctx) == (2, 3, 512)
        result = eng.submit(PROMPTS[0]).result()
        assert result.tokens == reference(model, PROMPTS[0], 4).tokens


def test_close_while_threads_keep_submitting(model: llamakit.Model) -> None:
    """Threads that keep submitting and reading while the engine closes under them each end
    with a result or a typed error (EngineClosedError, QueueFullError), never a crash or a
    hang; every request they got back is done."""
    eng = llamakit.Engine(model, n_parallel=2, n_ctx=1024, max_queue=4, n_batch=64,
                          n_threads=2)
    started = threading.Barrier(5)
    seen: list[llamakit._engine.Request[llamakit.GenerationResult]] = []
    unexpected: list[BaseException] = []

    def client(i: int) -> None:
        started.wait()
        while True:
            try:
                request = eng.submit(PROMPTS[i], max_new_tokens=20, temperature=0)
            except llamakit.QueueFullError:
                continue
            except llamakit.EngineClosedError:
                return
            except BaseException as error:  # noqa: BLE001 - reported below
                unexpected.append(error)
                return
            seen.append(request)
            try:
                request.result()
            except llamakit.EngineClosedError:
                return
            except BaseException as error:  # noqa: BLE001 - reported below
                unexpected.append(error)
                return

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    while eng.stats().requests_total < 8:
        threading.Event().wait(0.001)
    eng.close(drain=False)
    for thread in threads:
        thread.join()
    assert unexpected == []
    assert seen and all(request.done for request in seen)
