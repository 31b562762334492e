"""Fixtures of the example plugin's tests, on top of ``llamakit.testing``'s pytest plugin
(``synthetic_model``, ``tiny_model_path``), which llamakit registers through its
``pytest11`` entry point."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import llamakit
import pytest


@pytest.fixture(scope="session")
def model(tiny_model_path: Path) -> Iterator[llamakit.Model]:
    """The tiny random-weight llama model of llamakit.testing, on the CPU backend."""
    with llamakit.load_model(tiny_model_path, backend="cpu") as loaded:
        yield loaded


@pytest.fixture
def ctx(model: llamakit.Model) -> Iterator[llamakit.Context]:
    with model.new_context(n_ctx=256, n_batch=64, n_threads=2) as context:
        yield context
