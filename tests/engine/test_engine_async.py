"""The engine's asyncio API: streams and results on any loop, several loops at once,
cancellation by the task, by leaving the stream and by timeout, and the demo model
answering sixteen arithmetic questions at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from engine_helpers import no_eog, reference

import llamakit
from llamakit import _demo

PROMPTS = ["Hello world", "The quick brown fox jumps over", "A", "Once upon a time",
           "1 2 3 4 5 6 7 8 9", "Good morning"]


def test_stream_and_generate(model: llamakit.Model, engine: llamakit.Engine) -> None:
    """Streamed pieces join into the result's text; awaited results equal Context.generate;
    the loop keeps running other tasks while it waits."""
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    async def main() -> None:
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        stream = engine.stream(PROMPTS[1], max_new_tokens=10, temperature=0)
        pieces = [piece async for piece in stream]
        assert stream.result is not None
        assert "".join(pieces) == stream.result.text
        by_tokens = await engine.generate(tokens=model.tokenize(PROMPTS[1]), max_new_tokens=10,
                                          temperature=0)
        assert by_tokens.tokens == stream.result.tokens
        results = await asyncio.gather(*[engine.generate(p, max_new_tokens=7, temperature=0)
                                         for p in PROMPTS])
        stop.set()
        await tick
        for prompt, result in zip(PROMPTS, results, strict=True):
            assert result.tokens == reference(model, prompt, 7).tokens

    asyncio.run(main())
    assert ticks > 0


def test_two_event_loops_in_two_threads(model: llamakit.Model,
                                        engine: llamakit.Engine) -> None:
    """Two threads, each with its own event loop, share one engine."""
    outcomes: dict[int, list[list[int]]] = {}
    errors: list[BaseException] = []

    def thread_main(k: int) -> None:
        async def main() -> list[list[int]]:
            prompts = PROMPTS[k::2]
            results = await asyncio.gather(*[engine.generate(p, max_new_tokens=6 + k,
                                                             temperature=0) for p in prompts])
            return [r.tokens for r in results]

        try:
            outcomes[k] = asyncio.run(main())
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=thread_main, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for k in range(2):
        assert outcomes[k] == [reference(model, p, 6 + k).tokens for p in PROMPTS[k::2]]


def test_cancelled_task_and_left_stream_free_their_slots(model: llamakit.Model) -> None:
    """Cancelling the awaiting task, leaving an ``async with`` stream early and a
    wait_for timeout each cancel their request; the slots are free afterwards."""
    bias = no_eog(model)
    with llamakit.Engine(model, n_parallel=2, n_ctx=8192, n_batch=64, n_threads=2) as eng:
        async def main() -> None:
            task = asyncio.create_task(eng.generate(PROMPTS[0], max_new_tokens=4000,
                                                    logit_bias=bias))
            async with eng.stream(PROMPTS[1], max_new_tokens=4000, logit_bias=bias) as stream:
                async for _ in stream:
                    break
                request = stream.request
            assert request is not None
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(eng.generate(PROMPTS[2], max_new_tokens=4000,
                                                    logit_bias=bias), timeout=0.05)
            with pytest.raises(llamakit.AbortedError):
                await asyncio.to_thread(request.result)
            # the other two requests end too; then every slot is free
            other = await eng.generate(PROMPTS[3], max_new_tokens=4, temperature=0)
            assert other.tokens == reference(model, PROMPTS[3], 4).tokens

        asyncio.run(main())
        for _ in range(1000):  # the cancelled requests leave within a step each
            stats = eng.stats()
            if stats.requests_cancelled == 3:
                break
            threading.Event().wait(0.01)
        assert stats.requests_cancelled == 3
        assert stats.slots_busy == 0 and stats.queue_depth == 0


def test_queue_full_on_await(model: llamakit.Model) -> None:
    with llamakit.Engine(model, n_parallel=1, n_ctx=4096, max_queue=0, n_batch=64,
                         n_threads=2) as eng:
        running = eng.submit(PROMPTS[0], max_new_tokens=4000, logit_bias=no_eog(model))

        async def main() -> None:
            with pytest.raises(llamakit.QueueFullError):
                await eng.generate(PROMPTS[1], max_new_tokens=1)

        asyncio.run(main())
        running.cancel()


def test_closed_engine_on_await(model: llamakit.Model) -> None:
    eng = llamakit.Engine(model, n_parallel=1, n_ctx=4096, n_batch=64, n_threads=2)

    async def main() -> None:
        task = asyncio.create_task(eng.generate(PROMPTS[0], max_new_tokens=4000,
                                                logit_bias=no_eog(model)))
        await asyncio.sleep(0)
        await asyncio.to_thread(eng.close, drain=False)
        with pytest.raises(llamakit.EngineClosedError):
            await task
        with pytest.raises(llamakit.EngineClosedError):
            await eng.generate(PROMPTS[0])

    asyncio.run(main())


@pytest.fixture(scope="module")
def demo() -> Iterator[llamakit.Model]:
    with llamakit.demo_model(backend="cpu") as model:
        yield model


def test_demo_model_answers_sixteen_questions_at_once(demo: llamakit.Model) -> None:
    """Sixteen different arithmetic questions, asked at once on four slots (twelve wait in
    the queue), are all answered exactly, as Context.chat answers them one by one."""
    questions = [q for q in _demo.demo_questions(2, 6) if q.task in ("add", "sub", "mul")]
    questions = questions[:16]
    assert len({q.question for q in questions}) == 16
    with llamakit.Engine(demo, n_parallel=4, n_ctx=1024, n_threads=2) as eng:
        async def main() -> list[llamakit.ChatResult]:
            return await asyncio.gather(*[
                eng.chat([{"role": "user", "content": q.question}], temperature=0,
                         max_new_tokens=16) for q in questions])

        replies = asyncio.run(main())
        assert [r.content for r in replies] == [q.answer for q in questions]
        assert eng.stats().requests_total == 16
    with demo.new_context(n_ctx=256, n_threads=2) as ctx:
        for question, reply in zip(questions, replies, strict=True):
            alone = ctx.chat([{"role": "user", "content": question.question}],
                             temperature=0, max_new_tokens=16)
            assert reply.generation.tokens == alone.generation.tokens


def test_chat_turns_reuse_the_slot_cache(demo: llamakit.Model) -> None:
    """The second turn of a conversation evaluates only what is new: stats and timings
    show the first turn's tokens as cached, and the reply equals Context.chat's."""
    with llamakit.Engine(demo, n_parallel=2, n_ctx=1024, n_threads=2) as eng:
        messages = [{"role": "user", "content": "What is 12 + 30?"}]

        async def main() -> tuple[llamakit.ChatResult, llamakit.ChatResult]:
            first = await eng.chat(messages, temperature=0, max_new_tokens=16)
            stream = eng.chat_stream([*messages, first.message,
                                      {"role": "user", "content": "What is 7 * 6?"}],
                                     temperature=0, max_new_tokens=16)
            pieces = [piece async for piece in stream]
            assert stream.result is not None
            assert "".join(pieces) == stream.result.content
            return first, stream.result

        first, second = asyncio.run(main())
        cached = second.generation.timings.prompt_tokens_cached
        assert cached >= first.usage.prompt_tokens
        assert eng.stats().cached_tokens_total == cached
    with demo.new_context(n_ctx=512, n_threads=2) as ctx:
        again = ctx.chat([*messages, first.message,
                          {"role": "user", "content": "What is 7 * 6?"}],
                         temperature=0, max_new_tokens=16)
    assert second.content == again.content


def test_async_embeddings(model: llamakit.Model) -> None:
    texts = ["Hello world", "The quick brown fox"]
    with llamakit.Engine(model, n_parallel=2, n_ctx=512, embeddings=True, n_threads=2) as eng:
        async def main() -> list[object]:
            return list(await asyncio.gather(eng.embed(texts), eng.embed(texts[1])))

        both, one = asyncio.run(main())
        assert both.shape[0] == 2  # type: ignore[attr-defined]
        assert abs(both[1] - one).max() < 1e-4  # type: ignore[index, operator]


def test_aclose_drains_without_blocking_the_loop(model: llamakit.Model) -> None:
    eng = llamakit.Engine(model, n_parallel=2, n_ctx=1024, n_batch=64, n_threads=2)

    async def main() -> list[llamakit.GenerationResult]:
        tasks = [asyncio.create_task(eng.generate(p, max_new_tokens=5, temperature=0))
                 for p in PROMPTS[:3]]
        while any(stream_not_started(eng, 3)):
            await asyncio.sleep(0.001)
        await eng.aclose()
        return list(await asyncio.gather(*tasks))

    results = asyncio.run(main())
    for prompt, result in zip(PROMPTS, results, strict=False):
        assert result.tokens == reference(model, prompt, 5).tokens
    assert eng.closed


def stream_not_started(eng: llamakit.Engine, n: int) -> list[bool]:
    """One flag per expected request that has not reached the engine yet."""
    submitted = eng.stats().requests_total
    return [True] * max(0, n - submitted)
