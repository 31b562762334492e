"""Greedy output equals, token for token, a C program driving llama.cpp's C API directly."""

from __future__ import annotations

from pathlib import Path

import pytest

import llamakit
from llamakit._build.variant import build_variant
from llamakit._plugins.manager import get_plugin_host
from llamakit.testing import compile_greedy_reference, run_greedy_reference


@pytest.fixture(scope="module")
def reference_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = build_variant(get_plugin_host().backends()["cpu"])
    return compile_greedy_reference(built.include_dir, built.libraries, built.link_args,
                                    tmp_path_factory.mktemp("greedy-ref"))


@pytest.mark.parametrize("vocab,prompt", [("llama-spm", "Hello world"),
                                          ("llama-bpe", "The capital of France is")])
def test_greedy_matches_c_reference(reference_binary: Path, synthetic_model,  # type: ignore[no-untyped-def]
                                    vocab: str, prompt: str) -> None:
    """llamakit's generate(temperature=0) emits the reference program's tokens."""
    path = synthetic_model(vocab=vocab)
    with llamakit.load_model(path, backend="cpu") as model, \
            model.new_context(n_ctx=128, n_threads=1) as ctx:
        tokens = model.tokenize(prompt)
        expected = run_greedy_reference(reference_binary, path, tokens, n_predict=24, n_ctx=128)
        result = ctx.generate(tokens, max_new_tokens=24, temperature=0)
        assert result.tokens == expected[:len(result.tokens)]
        assert len(result.tokens) == len(expected) or result.finish_reason == "eog"
