"""Fixtures of the hardening tests: the corpus's small valid model and its cases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from gguf_corpus import Case, base_model_args, build_corpus, write_tiny_vocab


@pytest.fixture(scope="session")
def corpus_base(synthetic_model: Callable[..., Path],
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid model of the smallest shape with a 274-token vocabulary (about 18 KB)."""
    vocab = write_tiny_vocab(tmp_path_factory.mktemp("hardening") / "vocab-tiny.gguf")
    return synthetic_model(**base_model_args(vocab))


@pytest.fixture(scope="session")
def corpus_cases(corpus_base: Path) -> list[Case]:
    """The malformed-file corpus made from ``corpus_base``."""
    return build_corpus(corpus_base.read_bytes())
