"""The exception tree: one root, builtin bases, every public error exported."""

from __future__ import annotations

import inspect

import llamakit
from llamakit import _errors


def test_every_error_derives_from_the_root() -> None:
    """Each exception class in _errors is a LlamakitError and is exported by llamakit."""
    classes = [obj for _, obj in inspect.getmembers(_errors, inspect.isclass)
               if issubclass(obj, Exception) and obj.__module__ == _errors.__name__]
    assert len(classes) >= 15
    for cls in classes:
        assert issubclass(cls, llamakit.LlamakitError)
        assert getattr(llamakit, cls.__name__) is cls
        assert cls.__name__ in _errors.__doc__  # drawn in the module docstring


def test_leaves_subclass_matching_builtins() -> None:
    """Callers can catch the natural builtin."""
    assert issubclass(llamakit.ConfigError, ValueError)
    assert issubclass(llamakit.ModelNotFoundError, FileNotFoundError)
    assert issubclass(llamakit.ModelLoadError, ValueError)
    assert issubclass(llamakit.InvalidTokenError, IndexError)
    assert issubclass(llamakit.ContextOverflowError, ValueError)
    assert issubclass(llamakit.BackendUnavailableError, RuntimeError)
    assert issubclass(llamakit.ClosedError, ValueError)


def test_overflow_error_carries_both_numbers() -> None:
    """ContextOverflowError names the token count and n_ctx."""
    err = llamakit.ContextOverflowError(300, 256)
    assert (err.n_tokens, err.n_ctx) == (300, 256)
    assert "300" in str(err) and "256" in str(err)
