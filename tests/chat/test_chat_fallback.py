"""A GGUF without a chat template: the built-in format is chosen from the model's metadata,
and a reply ends at the template's end-of-turn markers whatever the vocabulary says."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import llamakit
from llamakit._chat import fallback

# The vocab files carry their model's template: an empty one stands for "none".
SMALL = {"n_embd": 32, "n_layer": 1, "n_head": 4, "n_head_kv": 2, "chat_template": ""}


@pytest.fixture(autouse=True)
def _fresh_warnings() -> None:
    fallback._warned.clear()


@pytest.mark.parametrize("vocab,metadata,expected,why", [
    ("llama-bpe", {}, "llama3", "<|start_header_id|>"),
    ("qwen2", {}, "chatml", "<|im_start|>"),
    ("llama-spm", {"general.name": "Gemma 3 Tiny"}, "gemma", "general.name"),
    ("llama-spm", {"general.name": "Llama-2 7B Chat"}, "llama2", "general.name"),
    ("phi-3", {}, "phi3", "<|assistant|>"),
    ("command-r", {}, "command-r", "<|START_OF_TURN_TOKEN|>"),
])
def test_metadata_chooses_the_builtin(synthetic_model: Callable[..., Path], vocab: str,
                                      metadata: dict[str, str], expected: str, why: str,
                                      caplog: pytest.LogCaptureFixture) -> None:
    path = synthetic_model(vocab=vocab, metadata=metadata, **SMALL)
    with llamakit.load_model(path, backend="cpu", vocab_only=True) as model, \
            caplog.at_level(logging.WARNING, logger="llamakit.chat"):
        assert not model.chat_template()
        chosen, reason = fallback.guess_builtin(model)
        assert chosen == expected and why in reason
        messages = [{"role": "user", "content": "Hi"}]
        assert model.apply_chat_template(messages) == \
            llamakit.apply_chat_template(messages, expected)
        model.apply_chat_template(messages)
    warnings = [r.getMessage() for r in caplog.records if r.name == "llamakit.chat"]
    assert len(warnings) == 1, "one warning per model, not per call"
    assert f"built-in {expected!r}" in warnings[0]
    for how in ("template=", "[chat] template", "--chat-template"):
        assert how in warnings[0]


def test_nothing_matches_falls_back_to_chatml(synthetic_model: Callable[..., Path],
                                              caplog: pytest.LogCaptureFixture) -> None:
    path = synthetic_model(vocab="llama-spm", **SMALL)
    with llamakit.load_model(path, backend="cpu", vocab_only=True) as model, \
            caplog.at_level(logging.WARNING, logger="llamakit.chat"):
        assert fallback.guess_builtin(model)[0] is None
        text = model.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert text.startswith("<|im_start|>user\nHi<|im_end|>")
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "llamakit.chat"]
    assert "nothing in its metadata" in warning and "default 'chatml'" in warning


def test_explicit_template_is_not_a_fallback(synthetic_model: Callable[..., Path],
                                             caplog: pytest.LogCaptureFixture) -> None:
    path = synthetic_model(vocab="llama-spm", **SMALL)
    with llamakit.load_model(path, backend="cpu", vocab_only=True) as model, \
            caplog.at_level(logging.WARNING, logger="llamakit.chat"):
        model.apply_chat_template([{"role": "user", "content": "Hi"}], "llama3")
    assert not [r for r in caplog.records if r.name == "llamakit.chat"]


@pytest.fixture(scope="module")
def plain_marker_model(synthetic_model: Callable[..., Path],
                       tmp_path_factory: pytest.TempPathFactory,
                       scripter: tuple[dict[str, Any], Callable[[Path, list[int]], None]]
                       ) -> Path:
    """A qwen2-vocabulary model scripted to answer "Hello!" and then write ``<end_of_turn>``
    as plain text: the issue's case (a template whose markers the vocabulary lacks, so the
    model writes them as text) on a synthetic model."""
    shape, script = scripter
    base = synthetic_model(**shape)
    with llamakit.load_model(base, backend="cpu", vocab_only=True) as vocab:
        hello, bang = vocab.tokenize("Hello!", add_special=False)
        (newline,) = vocab.tokenize("\n", add_special=False)
        plain = vocab.tokenize("<end_of_turn>", add_special=False)
    chain = [newline, hello, bang, *plain]
    assert len(set(chain)) == len(chain) and len(plain) > 1
    path = tmp_path_factory.mktemp("fallback") / "plain-marker.gguf"
    shutil.copyfile(base, path)
    script(path, chain)
    return path


@pytest.mark.parametrize("stream", [False, True])
def test_plain_text_marker_ends_the_reply(plain_marker_model: Path, stream: bool) -> None:
    with llamakit.load_model(plain_marker_model, backend="cpu") as model, \
            model.new_context(n_ctx=128, n_threads=1) as ctx:
        messages = [{"role": "user", "content": "Hi"}]
        prompt = ctx.chat(messages, template="gemma", max_new_tokens=0).generation.prompt_tokens
        raw = ctx.generate(prompt,
                           max_new_tokens=8, temperature=0)
        assert raw.text.startswith("Hello!<end_of_turn>")  # what the model writes
        if stream:
            chunks = ctx.chat_stream(messages, template="gemma", max_new_tokens=32,
                                     temperature=0)
            assert "".join(chunks) == "Hello!"
            result = chunks.result
            assert result is not None
        else:
            result = ctx.chat(messages, template="gemma", max_new_tokens=32, temperature=0)
        assert result.content == "Hello!"
        assert result.finish_reason == "stop"
        # The caller's own stop strings still apply alongside the template's.
        assert ctx.chat(messages, template="gemma", stop=["!"], max_new_tokens=32,
                        temperature=0).content == "Hello"


def test_stop_tokens_end_generation(ctx: llamakit.Context) -> None:
    """A template's end-of-turn token that the vocabulary does not flag as end-of-generation
    ends the reply all the same (generate's ``stop_tokens``)."""
    full = ctx.generate("Once upon a time", max_new_tokens=8, temperature=0)
    assert len(full.tokens) == 8
    stopper = full.tokens[3]
    first = full.tokens.index(stopper)
    cut = ctx.generate("Once upon a time", max_new_tokens=8, temperature=0,
                       stop_tokens=[stopper])
    assert cut.tokens == full.tokens[:first]
    assert cut.finish_reason == "eog"
