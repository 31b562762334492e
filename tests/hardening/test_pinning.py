"""Every handle-layer function that hands a handle's pointer to C keeps the handle pinned."""

from __future__ import annotations

import ast
from pathlib import Path

import llamakit

_NATIVE = Path(llamakit.__file__).parent / "_native"
# Reading ``.ptr`` here is not a C call on a live object: the property itself, the
# constructors (the object is not shared yet), and close (it only marks the handle).
_EXEMPT = {"ptr", "__init__", "close", "_begin_call"}


def _uses_pointer(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr in {"ptr", "vocab", "memory"}
               and not (isinstance(n.ctx, ast.Store)) for n in ast.walk(node))


def _is_pinned(func: ast.FunctionDef) -> bool:
    if any(isinstance(d, ast.Name) and d.id == "pinned" for d in func.decorator_list):
        return True
    # ``with x.pinned():`` around the body counts as well
    return any(isinstance(n, ast.withitem) and isinstance(n.context_expr, ast.Call)
               and isinstance(n.context_expr.func, ast.Attribute)
               and n.context_expr.func.attr == "pinned" for n in ast.walk(func))


def test_every_native_pointer_use_is_pinned() -> None:
    """A function of llamakit/_native that reads a handle's pointer is @pinned."""
    unpinned = []
    for path in sorted(p for p in _NATIVE.glob("*.py") if p.name != "handle.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name not in _EXEMPT \
                    and _uses_pointer(node) and not _is_pinned(node):
                unpinned.append(f"{path.name}:{node.lineno} {node.name}")
    assert not unpinned, "functions passing a handle's pointer to C without @pinned: " + \
        ", ".join(unpinned)
