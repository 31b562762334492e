"""Misuse of the API raises typed errors; none reaches a llama.cpp assert."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import llamakit


@pytest.fixture
def small_ctx(model: llamakit.Model) -> Any:
    with model.new_context(n_ctx=128, n_batch=32, n_ubatch=32, n_threads=1) as ctx:
        yield ctx


@pytest.mark.parametrize("tokens", [[1, 32000], [1, -1], [1, 2**40], [2**70]],
                         ids=["n_vocab", "negative", "huge", "beyond-int64"])
def test_out_of_vocabulary_ids_are_typed_errors(small_ctx: llamakit.Context,
                                                tokens: list[int]) -> None:
    """Out-of-vocabulary ids raise TokenizeError in decode, detokenize, lookups and logit_bias."""
    model = small_ctx.model
    with pytest.raises(llamakit.TokenizeError):
        small_ctx.generate(tokens, max_new_tokens=1)
    with pytest.raises(llamakit.TokenizeError):
        model.detokenize(tokens)
    with pytest.raises(llamakit.TokenizeError):
        small_ctx.generate("Hi", max_new_tokens=1, logit_bias={tokens[-1]: 1.0})
    if tokens[-1] < 2**63:
        for lookup in (model.token_to_piece, model.token_text, model.is_eog,
                       model.is_control):
            with pytest.raises(llamakit.InvalidTokenError):
                lookup(tokens[-1])


def test_embeddings_on_a_generation_context(small_ctx: llamakit.Context) -> None:
    """A context made without embeddings=True refuses to embed."""
    with pytest.raises(llamakit.ContextError, match="embeddings=True"):
        small_ctx.embeddings("hello")


def test_batches_larger_than_n_batch_are_refused(small_ctx: llamakit.Context) -> None:
    """A batch past n_batch or an empty one is InvalidBatchError, a long embed text overflows."""
    handle = small_ctx._handle
    with pytest.raises(llamakit.InvalidBatchError, match="n_batch=32"):
        handle.decode([1] * 33)
    with pytest.raises(llamakit.InvalidBatchError):
        handle.decode([])
    with small_ctx.model.new_context(n_ctx=128, n_batch=16, embeddings=True,
                                     n_threads=1) as ectx, \
            pytest.raises(llamakit.ContextOverflowError):
        ectx.embeddings("word " * 40)


_NON_CAUSAL_SCRIPT = """
import sys, llamakit
with llamakit.load_model(sys.argv[1], backend="cpu") as model, \\
        model.new_context(n_ctx=128, n_batch=64, n_ubatch=8, embeddings=True,
                          n_threads=1) as ctx:
    assert ctx.embeddings("hi").shape == (16,)
    try:
        ctx.embeddings("word " * 20)
    except llamakit.LlamakitError as exc:
        print(type(exc).__name__)
"""


def test_non_causal_model_batches_beyond_n_ubatch_are_refused(
        synthetic_model: Callable[..., Path]) -> None:
    """Without causal attention llama.cpp asserts n_ubatch >= batch; llamakit refuses it."""
    path = synthetic_model(n_embd=16, n_layer=1, n_head=2, n_head_kv=1, n_ff=32,
                           metadata={"llama.attention.causal": False})
    # in a subprocess: a regression here aborts the process, which must not end the run
    proc = subprocess.run([sys.executable, "-c", _NON_CAUSAL_SCRIPT, str(path)],
                          capture_output=True, text=True,
                          env={**os.environ, "GGML_NO_BACKTRACE": "1"})
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert proc.stdout.split() in (["InvalidBatchError"], ["ContextOverflowError"])


@pytest.mark.parametrize("kwargs", [{"n_ctx": 2**40}, {"n_batch": 2**33},
                                    {"n_threads": 2**31}, {"n_ubatch": -1}, {"n_ctx": 0}])
def test_context_sizes_out_of_range_are_config_errors(model: llamakit.Model,
                                                      kwargs: dict[str, Any]) -> None:
    """Sizes that do not fit llama.cpp's integer fields are ConfigError, not OverflowError."""
    with pytest.raises(llamakit.ConfigError):
        model.new_context(**kwargs)


def test_negative_max_new_tokens(small_ctx: llamakit.Context) -> None:
    """max_new_tokens below zero is a ConfigError."""
    with pytest.raises(llamakit.ConfigError, match="max_new_tokens"):
        small_ctx.generate("Hi", max_new_tokens=-1)
    with pytest.raises(llamakit.ConfigError):
        list(small_ctx.stream("Hi", max_new_tokens=-5))


def test_ten_million_characters_tokenize(corpus_base: Path) -> None:
    """A 10-million-character text tokenizes (and a prompt that long is refused cleanly)."""
    text = "hello world " * 833_334
    with llamakit.load_model(corpus_base, backend="cpu") as model:
        tokens = model.tokenize(text)
        assert len(tokens) > 1_000_000
        assert model.detokenize(tokens[:50]).split()[:2] == ["hello", "world"]
        with model.new_context(n_ctx=64, n_threads=1) as ctx, \
                pytest.raises(llamakit.ContextOverflowError):
            ctx.generate(text, max_new_tokens=1)


_MODEL_CALLS: dict[str, Callable[[llamakit.Model], object]] = {
    "metadata": lambda m: m.metadata, "info": lambda m: m.info, "n_vocab": lambda m: m.n_vocab,
    "bos_token": lambda m: m.bos_token, "eos_token": lambda m: m.eos_token,
    "add_bos": lambda m: m.add_bos, "special_tokens": lambda m: m.special_tokens,
    "has_encoder": lambda m: m.has_encoder, "offload": lambda m: m.offload,
    "tokenize": lambda m: m.tokenize("hi"), "detokenize": lambda m: m.detokenize([1]),
    "token_to_piece": lambda m: m.token_to_piece(1), "token_text": lambda m: m.token_text(1),
    "is_eog": lambda m: m.is_eog(1), "is_control": lambda m: m.is_control(1),
    "chat_template": lambda m: m.chat_template(), "new_context": lambda m: m.new_context(),
    "load_lora": lambda m: m.load_lora(m.path),
}
_CONTEXT_CALLS: dict[str, Callable[[llamakit.Context], object]] = {
    "n_ctx": lambda c: c.n_ctx, "n_batch": lambda c: c.n_batch, "pooling": lambda c: c.pooling,
    "generate": lambda c: c.generate("hi", max_new_tokens=1),
    "stream": lambda c: list(c.stream("hi", max_new_tokens=1)),
    "tokenize": lambda c: c.tokenize("hi"), "detokenize": lambda c: c.detokenize([1]),
    "reset": lambda c: c.reset(), "kv": lambda c: c.kv.seq_pos_max(0),
    "perf": lambda c: c.perf(), "state_bytes": lambda c: c.state_bytes(),
    "chat": lambda c: c.chat([{"role": "user", "content": "hi"}], max_new_tokens=1),
}


@pytest.mark.parametrize("name", sorted(_MODEL_CALLS))
def test_model_calls_after_close_raise_closed_error(tiny_model_path: Path, name: str) -> None:
    """Every model call after close() raises ClosedError (none reads freed memory)."""
    model = llamakit.load_model(tiny_model_path, backend="cpu")
    model.close()
    with pytest.raises(llamakit.ClosedError):
        _MODEL_CALLS[name](model)


@pytest.mark.parametrize("name", sorted(_CONTEXT_CALLS))
def test_context_calls_after_close_raise_closed_error(model: llamakit.Model,
                                                      name: str) -> None:
    """Every context call after close() raises ClosedError; close and cancel do nothing."""
    ctx = model.new_context(n_ctx=64, n_threads=1)
    ctx.close()
    with pytest.raises(llamakit.ClosedError):
        _CONTEXT_CALLS[name](ctx)
    ctx.close()
    ctx.cancel()


def test_context_calls_after_its_model_closes(tiny_model_path: Path) -> None:
    """Closing the model closes its contexts: their calls raise ClosedError too."""
    model = llamakit.load_model(tiny_model_path, backend="cpu")
    ctx = model.new_context(n_ctx=64, n_threads=1)
    model.close()
    assert ctx.closed
    with pytest.raises(llamakit.ClosedError):
        ctx.generate("hi", max_new_tokens=1)
