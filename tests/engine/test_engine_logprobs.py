"""logprobs= through the Engine (sync and asyncio) and Context.generate_batch: the same
entries as Context.generate, each slot read from its own output row, only when asked."""

from __future__ import annotations

import asyncio

import pytest
from engine_helpers import no_eog, reference

import llamakit
from llamakit._logprobs import StreamPiece, TokenLogprob

PROMPTS = ["Hello world", "The quick brown fox jumps over the lazy dog", "A",
           "Once upon a time in a land far away", "1 2 3 4 5"]


def same_entries(got: list[TokenLogprob] | None, want: list[TokenLogprob] | None) -> None:
    assert got is not None and want is not None
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert (a.token, a.text, a.bytes) == (b.token, b.text, b.bytes)
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert [t.token for t in a.top_logprobs] == [t.token for t in b.top_logprobs]
        assert [t.text for t in a.top_logprobs] == [t.text for t in b.top_logprobs]
        assert [t.logprob for t in a.top_logprobs] == pytest.approx(
            [t.logprob for t in b.top_logprobs], abs=1e-4)


@pytest.mark.parametrize("k", [0, 3, 20])
def test_engine_greedy_logprobs_equal_context_generate(model: llamakit.Model,
                                                       engine: llamakit.Engine, k: int) -> None:
    """Requests running together on four slots (one more queued) each carry exactly the
    entries Context.generate reports for the same prompt; one without logprobs gets None."""
    requests = [engine.submit(p, max_new_tokens=6, temperature=0, logprobs=k,
                              logit_bias=no_eog(model)) for p in PROMPTS]
    plain = engine.submit(PROMPTS[0], max_new_tokens=4, temperature=0)
    for prompt, request in zip(PROMPTS, requests, strict=True):
        result = request.result()
        expected = reference(model, prompt, 6, logprobs=k, logit_bias=no_eog(model))
        assert result.tokens == expected.tokens
        same_entries(result.logprobs, expected.logprobs)
        assert all(len(e.top_logprobs) == k for e in result.logprobs or [])
    assert plain.result().logprobs is None
    assert all(type(p) is str for p in engine.submit("Hi", max_new_tokens=3, temperature=0))


def test_engine_post_sampling_reads_each_slots_own_sample(model: llamakit.Model,
                                                         engine: llamakit.Engine) -> None:
    """Post-sampling figures come from the candidates of each slot's own sample: four
    seeded top-k requests decoded together equal Context.generate one by one."""
    kwargs = {"max_new_tokens": 6, "temperature": 0.9, "top_k": 3, "logprobs": 5,
              "post_sampling_probs": True}
    requests = [engine.submit(p, seed=10 + i, **kwargs) for i, p in enumerate(PROMPTS[:4])]
    for i, (prompt, request) in enumerate(zip(PROMPTS[:4], requests, strict=True)):
        result = request.result()
        with model.new_context(n_ctx=256, n_threads=2) as ctx:
            expected = ctx.generate(prompt, seed=10 + i, **kwargs)  # type: ignore[arg-type]
        assert result.tokens == expected.tokens
        same_entries(result.logprobs, expected.logprobs)
        for entry in result.logprobs or []:
            assert 1 <= len(entry.top_logprobs) <= 3
            assert entry.token in [t.token for t in entry.top_logprobs]


def test_engine_stream_pieces_carry_their_tokens(model: llamakit.Model,
                                                 engine: llamakit.Engine) -> None:
    """Streamed pieces are StreamPieces whose entries add up to the result's, in order."""
    request = engine.submit("Once upon a time", max_new_tokens=8, temperature=0, logprobs=2,
                            logit_bias=no_eog(model))
    pieces = list(request)
    assert pieces and all(isinstance(p, StreamPiece) for p in pieces)
    result = request.result()
    assert [e for p in pieces for e in p.logprobs] == result.logprobs  # type: ignore[attr-defined]
    assert "".join(pieces) == result.text


def test_engine_logprobs_are_validated(engine: llamakit.Engine) -> None:
    """Out-of-range logprobs are refused at submission, as Context.generate refuses them."""
    for value in (-1, 21, True):
        with pytest.raises(llamakit.ConfigError, match="logprobs"):
            engine.submit("Hi", max_new_tokens=1, logprobs=value)
    with pytest.raises(llamakit.ConfigError, match="post_sampling_probs"):
        engine.submit("Hi", max_new_tokens=1, post_sampling_probs=True)


def test_engine_chat_and_asyncio_paths(model: llamakit.Model, engine: llamakit.Engine) -> None:
    """submit_chat, engine.chat, engine.generate and engine.stream carry the entries too."""
    messages = [{"role": "user", "content": "Hi"}]
    with model.new_context(n_ctx=256, n_threads=2) as ctx:
        want_chat = ctx.chat(messages, template="chatml", max_new_tokens=5, temperature=0,
                             logprobs=2)
    want = reference(model, "Hello world", 5, logprobs=1, logit_bias=no_eog(model))
    reply = engine.submit_chat(messages, template="chatml", max_new_tokens=5, temperature=0,
                               logprobs=2).result()
    same_entries(reply.generation.logprobs, want_chat.generation.logprobs)
    content = reply.to_dict()["logprobs"]["content"]
    assert [c["token"] for c in content] == [e.text for e in reply.generation.logprobs or []]

    async def main() -> None:
        chat = await engine.chat(messages, template="chatml", max_new_tokens=5, temperature=0,
                                 logprobs=2)
        same_entries(chat.generation.logprobs, want_chat.generation.logprobs)
        result = await engine.generate("Hello world", max_new_tokens=5, temperature=0,
                                       logprobs=1, logit_bias=no_eog(model))
        same_entries(result.logprobs, want.logprobs)
        stream = engine.stream("Hello world", max_new_tokens=5, temperature=0, logprobs=1,
                               logit_bias=no_eog(model))
        entries = [e async for p in stream for e in p.logprobs]  # type: ignore[attr-defined]
        assert stream.result is not None
        assert entries == stream.result.logprobs
        same_entries(stream.result.logprobs, want.logprobs)
        plain = await engine.generate("Hello world", max_new_tokens=2, temperature=0)
        assert plain.logprobs is None

    asyncio.run(main())


@pytest.fixture
def bctx(model: llamakit.Model) -> llamakit.Context:
    return model.new_context(n_ctx=1024, n_batch=64, n_seq_max=4, n_threads=2)


def test_generate_batch_logprobs_equal_context_generate(model: llamakit.Model,
                                                        bctx: llamakit.Context) -> None:
    """generate_batch (more prompts than sequences) reports Context.generate's entries,
    stream_batch's pieces carry them, and none are recorded unless asked."""
    with bctx:
        results = bctx.generate_batch(PROMPTS, max_new_tokens=5, temperature=0, logprobs=4,
                                      logit_bias=no_eog(model))
        for prompt, result in zip(PROMPTS, results, strict=True):
            expected = reference(model, prompt, 5, logprobs=4, logit_bias=no_eog(model))
            assert result.tokens == expected.tokens
            same_entries(result.logprobs, expected.logprobs)
        stream = bctx.stream_batch(PROMPTS[:3], max_new_tokens=5, temperature=0, logprobs=1,
                                   logit_bias=no_eog(model))
        collected: dict[int, list[TokenLogprob]] = {0: [], 1: [], 2: []}
        for index, piece in stream:
            assert isinstance(piece, StreamPiece)
            collected[index].extend(piece.logprobs)
        for index, result in enumerate(stream.results):
            assert collected[index] == result.logprobs
        plain = bctx.generate_batch(PROMPTS[:2], max_new_tokens=2, temperature=0)
        assert all(r.logprobs is None for r in plain)
        with pytest.raises(llamakit.ConfigError, match="logprobs"):
            bctx.generate_batch(PROMPTS[:2], max_new_tokens=2, logprobs=21)
