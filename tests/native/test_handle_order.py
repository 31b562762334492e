"""Handles free their C objects children first, however they are closed or collected."""

from __future__ import annotations

import gc
from types import SimpleNamespace
from typing import Any

import pytest

from llamakit._native.handle import Handle


def _native() -> Any:
    return SimpleNamespace(ffi=None, lib=None)


def _pair(freed: list[str]) -> tuple[Handle, Handle]:
    parent = Handle(_native(), "model", freed.append)
    child = Handle(_native(), "context", freed.append)
    parent.add_dependent(child)
    return parent, child


def test_closing_the_parent_frees_the_child_first() -> None:
    freed: list[str] = []
    parent, child = _pair(freed)
    parent.close()
    assert freed == ["context", "model"] and child.closed and parent.closed
    parent.close()
    child.close()
    assert freed == ["context", "model"]


def test_a_collected_parent_waits_for_its_living_child() -> None:
    """The parent's safety net fires first (as in a garbage cycle): its C object stays
    until the child's is freed."""
    freed: list[str] = []
    parent, child = _pair(freed)
    parent._finalizer()  # what the garbage collector's callback does
    assert freed == []
    child.close()
    assert freed == ["context", "model"]


@pytest.mark.parametrize("parent_first", [True, False])
def test_a_garbage_cycle_frees_children_first(parent_first: bool) -> None:
    """A model and its context that only reference each other are freed context first,
    whichever the collector finalizes first."""
    freed: list[str] = []
    gc.collect()
    gc.disable()
    try:
        parent, child = _pair(freed)
        parent.cycle = child  # type: ignore[attr-defined]
        child.cycle = parent  # type: ignore[attr-defined]
        if parent_first:
            parent._finalizer()
        del parent, child
        gc.collect()
    finally:
        gc.enable()
    assert freed == ["context", "model"]
