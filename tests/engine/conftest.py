"""Fixtures of the engine tests: an engine over the tiny synthetic model, and helpers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import llamakit


@pytest.fixture
def engine(model: llamakit.Model) -> Iterator[llamakit.Engine]:
    with llamakit.Engine(model, n_parallel=4, n_ctx=1024, n_batch=64, n_threads=2) as eng:
        yield eng
