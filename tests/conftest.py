"""Shared fixtures: a tiny synthetic model loaded once on the CPU backend.

The generic fixtures (llama.cpp tree, synthetic model writers) come from
``llamakit.testing.fixtures``, registered as a pytest plugin by llamakit's entry point.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import llamakit


@pytest.fixture(scope="session")
def model(tiny_model_path: Path) -> Iterator[llamakit.Model]:
    with llamakit.load_model(tiny_model_path, backend="cpu") as loaded:
        yield loaded


@pytest.fixture
def ctx(model: llamakit.Model) -> Iterator[llamakit.Context]:
    with model.new_context(n_ctx=256, n_batch=64, n_threads=2) as context:
        yield context
