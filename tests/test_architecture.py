"""Layering rules of the package, checked on its source."""

from __future__ import annotations

import ast
from pathlib import Path

import llamakit

PACKAGE = Path(llamakit.__file__).parent


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_data" not in p.parts)


def test_only_the_handle_layer_touches_the_native_module() -> None:
    """Outside llamakit/_native, no code reads a cffi `lib` or `ffi` attribute."""
    offenders = []
    for path in _modules():
        if path.parent.name == "_native":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("lib", "ffi"):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


def test_cffi_is_imported_only_by_the_builder() -> None:
    """cffi itself is a build-time tool: only llamakit/_build imports it."""
    offenders = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "cffi" for n in names) and path.parent.name != "_build":
                offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_public_surface_is_sorted_and_complete() -> None:
    """__all__ is sorted and every name in it exists."""
    names = list(llamakit.__all__)
    assert names == sorted(names)
    for name in names:
        assert hasattr(llamakit, name), name


def test_modules_stay_small() -> None:
    """No module passes 700 lines (split by concept)."""
    big = {str(p.relative_to(PACKAGE)): n for p in _modules()
           if (n := len(p.read_text().splitlines())) > 700}
    assert big == {}
