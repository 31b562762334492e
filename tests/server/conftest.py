"""The module-scoped server the tests talk to (tests/server/server_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server_helpers import Served, start, stop


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    served = start("-np", "4", "-c", "2048", "--max-body-bytes", "65536")
    try:
        yield served
    finally:
        stop(served)
