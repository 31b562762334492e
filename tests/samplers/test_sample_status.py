"""The sampling shim's statuses map to the exception tree in one place."""

from __future__ import annotations

import pytest

import llamakit
from llamakit import GrammarError, SamplerError
from llamakit._native.status import SAMPLE_STATUSES, raise_for_sample


def test_tokens_and_zero_are_success() -> None:
    """A token id or 0 raises nothing."""
    raise_for_sample(0)
    raise_for_sample(31999)


@pytest.mark.parametrize("status", [-1, -2, -3, -5, -9])
def test_every_status_is_mapped(status: int) -> None:
    """Every shim status (and any unknown one) is a SamplerError naming the code."""
    with pytest.raises(SamplerError, match=f"status {status}"):
        raise_for_sample(status, "detail")


def test_table_matches_the_compiled_shim(model: llamakit.Model) -> None:
    """The table's codes are the shim's LK_SAMPLE_* values; grammar ones are GrammarError."""
    lib = model._handle.native.lib
    assert set(SAMPLE_STATUSES) == {lib.LK_SAMPLE_NO_LOGITS, lib.LK_SAMPLE_NO_TOKEN,
                                    lib.LK_SAMPLE_FAILED, lib.LK_SAMPLE_GRAMMAR}
    assert SAMPLE_STATUSES[lib.LK_SAMPLE_GRAMMAR][0] is GrammarError
    assert lib.LK_SAMPLE_PYTHON not in SAMPLE_STATUSES  # re-raised as the Python exception


def test_every_native_file_keys_the_module() -> None:
    """The module key covers every file of native/, the C++ sources included."""
    from llamakit._build.source import data_path
    from llamakit._build.variant import native_files

    names = {p.name for p in native_files(data_path("native"))}
    assert {"lk_sampling.cpp", "lk_sampling.h", "lk_json_schema.cpp",
            "10-sampling.cdef", "lk_shim.c"} <= names
