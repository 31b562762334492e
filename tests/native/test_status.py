"""llama_decode/llama_encode statuses map to the exception tree in one place."""

from __future__ import annotations

import pytest

from llamakit import AbortedError, DecodeError
from llamakit._native.status import DECODE_STATUSES, raise_for_decode


def test_zero_is_success() -> None:
    """Status 0 raises nothing."""
    raise_for_decode(0)


@pytest.mark.parametrize("status", [1, 2, -1, -2, -3, -7, 5])
def test_every_status_is_mapped(status: int) -> None:
    """Every documented status (and any unknown one) raises a DecodeError with the code."""
    with pytest.raises(DecodeError) as info:
        raise_for_decode(status, "llama_decode")
    assert info.value.status == status
    assert f"status {status}" in str(info.value)


def test_documented_statuses_are_all_in_the_table() -> None:
    """llama.h documents 1, 2, -1 and < -1; the table covers them, abort is AbortedError."""
    assert {1, 2, -1, -2, -3} <= set(DECODE_STATUSES)
    assert DECODE_STATUSES[2][0] is AbortedError
