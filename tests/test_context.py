"""Contexts: creation, generation, streaming, stop strings, embeddings, errors."""

from __future__ import annotations

import numpy as np
import pytest

import llamakit
from llamakit._context_text import TextAssembler


def test_default_n_ctx_is_min_of_train_and_4096(model: llamakit.Model) -> None:
    """Without n_ctx the context takes min(n_ctx_train, 4096), not 512."""
    with model.new_context() as ctx:
        assert ctx.n_ctx == min(model.info.n_ctx_train, 4096) == 2048


@pytest.mark.parametrize("kwargs", [{"n_ctx": 0}, {"n_ctx": -5}, {"n_batch": 0},
                                    {"n_ubatch": -1}, {"n_threads": 0}, {"n_ctx": 1.5},
                                    {"seed": -1}, {"pooling": "max"}])
def test_invalid_context_parameters_raise(model: llamakit.Model, kwargs: dict) -> None:  # type: ignore[type-arg]
    """Out-of-range context parameters are typed errors before llama.cpp sees them."""
    with pytest.raises(llamakit.ConfigError):
        model.new_context(**kwargs)


def test_greedy_is_deterministic(ctx: llamakit.Context) -> None:
    """temperature=0 gives the same tokens every time, also after reuse of the KV cache."""
    ctx.deterministic = False  # reuse the whole shared prefix, as this test checks
    first = ctx.generate("Hello world", max_new_tokens=12, temperature=0)
    second = ctx.generate("Hello world", max_new_tokens=12, temperature=0)
    ctx.reset()
    third = ctx.generate("Hello world", max_new_tokens=12, temperature=0)
    assert first.tokens == second.tokens == third.tokens
    assert len(first.tokens) == 12 and first.finish_reason == "length"
    assert second.timings.prompt_tokens_cached == 2
    pieces = b"".join(ctx.model.token_to_bytes(t, special=False) for t in first.tokens)
    assert first.text == pieces.decode("utf-8", errors="replace")


def test_seeded_sampling_is_reproducible(ctx: llamakit.Context) -> None:
    """The same seed gives the same sample; the result reports the seed used."""
    a = ctx.generate("Once", max_new_tokens=10, temperature=1.0, seed=42)
    b = ctx.generate("Once", max_new_tokens=10, temperature=1.0, seed=42)
    assert a.tokens == b.tokens and a.seed == 42
    c = ctx.generate("Once", max_new_tokens=10, temperature=1.0)
    assert c.seed is not None


def test_prompt_may_be_token_ids(ctx: llamakit.Context) -> None:
    """A list of ids generates like the equivalent text."""
    ids = ctx.tokenize("Hello world")
    assert ctx.generate(ids, max_new_tokens=5, temperature=0).tokens == \
        ctx.generate("Hello world", max_new_tokens=5, temperature=0).tokens


def test_stream_concatenates_to_generate(ctx: llamakit.Context) -> None:
    """Joining the streamed pieces gives generate()'s text; the stream keeps the result."""
    expected = ctx.generate("Hello", max_new_tokens=20, temperature=0)
    stream = ctx.stream("Hello", max_new_tokens=20, temperature=0)
    pieces = list(stream)
    assert "".join(pieces) == expected.text
    assert stream.result is not None and stream.result.tokens == expected.tokens


def test_assembler_never_splits_a_character() -> None:
    """The bytes of one character fed token by token come out as one whole piece."""
    assembler = TextAssembler([])
    euro = "\u20ac".encode()
    assert [assembler.feed(euro[:1]), assembler.feed(euro[1:2])] == ["", ""]
    assert assembler.feed(euro[2:] + b"x") == "\u20acx"
    assert assembler.feed(b"\xff") == "\ufffd"  # invalid bytes are replaced, not dropped
    assert assembler.finish() == ""


def test_assembler_holds_back_possible_stop_prefixes() -> None:
    """Text that may start a stop string waits; a false alarm is released."""
    assembler = TextAssembler(["</end>"])
    assert assembler.feed(b"abc</e") == "abc"
    assert assembler.feed(b"x") == "</ex"
    assert assembler.feed(b" </en") == " "
    assert assembler.feed(b"d> tail") == ""
    assert assembler.stopped and assembler.text == "abc</ex "
    assert assembler.finish() == ""


def test_stream_pieces_are_whole_characters(ctx: llamakit.Context) -> None:
    """Streamed pieces joined equal the result text, with no replacement characters."""
    stream = ctx.stream("Hello", max_new_tokens=40, temperature=1.5, seed=7)
    pieces = list(stream)
    assert stream.result is not None
    assert "".join(pieces) == stream.result.text
    raw = b"".join(ctx.model.token_to_bytes(t, special=False) for t in stream.result.tokens)
    assert stream.result.text == raw.decode("utf-8", errors="replace")


def test_stop_string_cuts_text(ctx: llamakit.Context) -> None:
    """A stop string ends generation with finish_reason 'stop' and is not in the text."""
    full = ctx.generate("Hello", max_new_tokens=24, temperature=0)
    assert len(full.text) > 6
    stop = full.text[3:6]
    cut = ctx.generate("Hello", max_new_tokens=24, temperature=0, stop=[stop])
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[:full.text.find(stop)]
    streamed = "".join(ctx.stream("Hello", max_new_tokens=24, temperature=0, stop=stop))
    assert streamed == cut.text


def test_empty_prompt_decision(ctx: llamakit.Context) -> None:
    """An empty string starts from BOS alone; an empty token list raises EmptyPromptError."""
    result = ctx.generate("", max_new_tokens=4, temperature=0)
    assert result.prompt_tokens == [ctx.model.bos_token]
    with pytest.raises(llamakit.EmptyPromptError):
        ctx.generate([], max_new_tokens=4)


def test_prompt_longer_than_context_raises(model: llamakit.Model) -> None:
    """ContextOverflowError carries the prompt length and n_ctx."""
    with model.new_context(n_ctx=16, n_batch=16) as small:
        n_ctx = small.n_ctx  # llama.cpp may round n_ctx up; this is the real size
        assert n_ctx >= 16
        with pytest.raises(llamakit.ContextOverflowError) as info:
            small.generate("word " * (n_ctx + 5))
        assert info.value.n_ctx == n_ctx and info.value.n_tokens > n_ctx


def test_generation_stops_when_context_is_full(model: llamakit.Model) -> None:
    """With on_overflow='truncate', filling n_ctx ends generation with 'length'."""
    with model.new_context(n_ctx=16, n_batch=16) as small:
        n_ctx = small.n_ctx
        result = small.generate("Hello world", max_new_tokens=n_ctx + 50, temperature=0,
                                on_overflow="truncate")
        assert result.finish_reason == "length"
        assert len(result.prompt_tokens) + len(result.tokens) == n_ctx + 1


def test_long_prompt_is_split_into_batches(model: llamakit.Model) -> None:
    """A prompt longer than n_batch is evaluated in chunks with the same result."""
    prompt = "the quick brown fox jumps over the lazy dog " * 8
    with model.new_context(n_ctx=256, n_batch=256) as big, \
            model.new_context(n_ctx=256, n_batch=8) as small:
        assert big.generate(prompt, max_new_tokens=6, temperature=0).tokens == \
            small.generate(prompt, max_new_tokens=6, temperature=0).tokens


def test_invalid_prompt_tokens_and_sampling_raise(ctx: llamakit.Context) -> None:
    """Bad ids and bad sampling values are typed errors, never aborts."""
    with pytest.raises(llamakit.InvalidTokenError):
        ctx.generate([1, 99999])
    with pytest.raises(llamakit.InvalidTokenError):
        ctx.generate([-3])
    for kwargs in ({"temperature": -1.0}, {"top_p": 1.5}, {"top_k": -1},
                   {"min_p": float("nan")}, {"seed": 2**40}):
        with pytest.raises(llamakit.SamplerError):
            ctx.generate("Hi", **kwargs)
    with pytest.raises(llamakit.ConfigError):  # not a sampling setting: a call argument
        ctx.generate("Hi", max_new_tokens=-1)
    with pytest.raises(llamakit.ConfigError):
        ctx.generate("Hi", stop=[""])


def test_timings_are_reported(ctx: llamakit.Context) -> None:
    """Timings count prompt and generated tokens and their milliseconds."""
    result = ctx.generate("Hello world", max_new_tokens=5, temperature=0)
    t = result.timings
    assert t.prompt_tokens == 3 and t.generated_tokens == 5
    assert t.prompt_ms > 0 and t.generated_ms > 0 and t.total_ms >= t.prompt_ms
    assert t.generated_tokens_per_s > 0
    assert t.native["n_eval"] >= 4


def test_embeddings_shape_and_norm(model: llamakit.Model) -> None:
    """A text gives a unit float32 vector of n_embd; a list gives a matrix."""
    with model.new_context(n_ctx=128, embeddings=True) as ectx:
        vector = ectx.embeddings("Hello world")
        assert vector.shape == (64,) and vector.dtype == np.float32
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
        matrix = ectx.embeddings(["Hello world", "Goodbye"])
        assert matrix.shape == (2, 64)
        np.testing.assert_allclose(matrix[0], vector, rtol=1e-5, atol=1e-6)
        assert not np.allclose(matrix[0], matrix[1])
        raw = ectx.embeddings("Hello world", normalize=False, pooling="last")
        assert abs(float(np.linalg.norm(raw)) - 1.0) > 1e-3


def test_embeddings_need_an_embeddings_context(ctx: llamakit.Context) -> None:
    """A generation context refuses embeddings with a clear error."""
    with pytest.raises(llamakit.ContextError, match="embeddings=True"):
        ctx.embeddings("Hello")


def test_context_use_after_close(model: llamakit.Model) -> None:
    """A closed context raises ClosedError; closing twice is fine."""
    context = model.new_context(n_ctx=32)
    context.close()
    context.close()
    with pytest.raises(llamakit.ClosedError):
        context.generate("Hello")
    with pytest.raises(llamakit.ClosedError):
        context.tokenize("Hello")
