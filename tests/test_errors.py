"""The exception tree: one root, builtin bases, every public error exported."""

from __future__ import annotations

import inspect
import re

import llamakit
from llamakit import _errors


def _drawn_tree() -> dict[str, tuple[str | None, str | None]]:
    """``{class: (drawn parent, drawn builtin)}`` from the drawing in _errors' docstring."""
    drawn: dict[str, tuple[str | None, str | None]] = {}
    stack: list[tuple[int, str]] = []
    for line in (_errors.__doc__ or "").splitlines():
        found = re.match(r"^(?P<indent>[ │├└─]*?)(?P<name>[A-Z]\w+Error)\b"
                         r"(?:\s+\((?P<builtin>\w+)\))?", line.strip("\n")[4:])
        if found is None:
            continue
        depth = len(found["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        drawn[found["name"]] = (stack[-1][1] if stack else None, found["builtin"])
        stack.append((depth, found["name"]))
    return drawn


def _classes() -> dict[str, type[BaseException]]:
    return {name: obj for name, obj in inspect.getmembers(_errors, inspect.isclass)
            if issubclass(obj, Exception) and obj.__module__ == _errors.__name__}


def test_every_error_derives_from_the_root() -> None:
    """Each exception class in _errors is a LlamakitError and is exported by llamakit."""
    classes = _classes()
    for cls in classes.values():
        assert issubclass(cls, llamakit.LlamakitError)
        assert getattr(llamakit, cls.__name__) is cls


def test_docstring_drawing_is_the_class_tree() -> None:
    """The tree drawn in _errors' docstring is exactly the classes, their parents and the
    builtins they add."""
    drawn, classes = _drawn_tree(), _classes()
    assert set(drawn) == set(classes)
    for name, (parent, builtin) in drawn.items():
        cls = classes[name]
        ours = [base for base in cls.__bases__ if base.__module__ == _errors.__name__]
        added = [base for base in cls.__bases__ if base.__module__ == "builtins"]
        if parent is None:
            assert cls is llamakit.LlamakitError and added == [Exception], name
            continue
        assert [base.__name__ for base in ours] == [parent], name
        assert [base.__name__ for base in added] == ([builtin] if builtin else []), name


def test_every_error_is_catchable_as_a_builtin() -> None:
    """Below the root every class subclasses a builtin error more specific than Exception,
    drawn on it or inherited from the branch it hangs on."""
    for name, cls in _classes().items():
        if cls is llamakit.LlamakitError:
            continue
        builtins = [base for base in cls.__mro__
                    if base.__module__ == "builtins" and base not in (Exception, BaseException,
                                                                     object)]
        assert builtins, name


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
