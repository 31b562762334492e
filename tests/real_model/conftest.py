"""The ``real_model`` tier: Gemma 3 270M (Q4_K_M), a real published model installed from PyPI
by the setup. Every test here is marked ``real_model`` and skips, saying why, when the model's
packages are not installed; nothing is downloaded at test time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import llamakit


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.real_model)


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """The assembled, checksum-verified GGUF (once per cache)."""
    from llamakit.testing import RealModelUnavailable, gemma3_270m_path

    try:
        return gemma3_270m_path()
    except RealModelUnavailable as exc:
        pytest.skip(f"real_model: {exc}")


@pytest.fixture(scope="session")
def gemma(gemma_path: Path) -> Iterator[llamakit.Model]:
    with llamakit.load_model(gemma_path, backend="cpu") as loaded:
        yield loaded


@pytest.fixture
def gemma_ctx(gemma: llamakit.Model) -> Iterator[llamakit.Context]:
    with gemma.new_context(n_ctx=512, n_batch=256, n_threads=2) as context:
        yield context
