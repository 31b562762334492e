"""Layering rules of the package, checked on its source."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import llamakit

PACKAGE = Path(llamakit.__file__).parent

#: The layers of docs/architecture.md ("Layers of the package"), lowest first. A module
#: imports only from its own layer or a lower one. A name maps a module and everything
#: below it; the longest matching name wins (``_chat.template`` is a contract although
#: the rest of ``_chat`` is a feature).
LAYERS: list[tuple[str, list[str]]] = [
    ("base", ["_errors", "_results", "_logging", "_config", "_version", "_context_text",
              "_owned", "_limits", "_files", "_fingerprint", "_grammar_limits",
              "_grammar_triggers",
              "_logprobs"]),
    ("contracts", ["_backend_spec", "_sampler_protocol", "_chat.template", "_command_spec",
                   "_quantize.plan", "_quantize.recipes", "_plugins", "_plugins.hookspecs",
                   "_resolver_spec", "_hf_resolver", "_package_resolver"]),
    ("registry", ["_plugins.manager", "_resolvers"]),
    ("file formats", ["_gguf"]),
    ("handles", ["_native"]),
    ("build and progress", ["_build", "_progress"]),
    ("backends", ["_backends", "_gpu"]),
    ("features", ["_sampling", "_grammar", "_chat", "_lora", "_overflow", "_quantize",
                  "_context_knobs", "_positions"]),
    ("model and samplers", ["_model", "_sampler_chain", "_perplexity"]),
    ("context", ["_context", "_context_core", "_prompt_cache", "_generation", "_context_lora",
                 "_state", "_batch", "_embeddings", "_kv", "_chat.mixin", "_gate",
                 "_determinism", "_logits", "_control_vector", "_rerank"]),
    ("engine", ["_engine"]),
    ("entry points", ["_from_config", "_cli", "_plugins.cli", "_demo", "__init__",
                      "__main__", "testing"]),
]

#: Imports that go up a layer on purpose: (importing module, imported module, why).
ALLOWED_UPWARD: list[tuple[str, str, str]] = [
    # Model.new_context() is the factory of contexts: a Context needs its Model, and the
    # factory lives on the Model because that is where users look for it. The import is
    # inside the method, so importing _model does not import the context layer.
    ("_model", "_context", "Model.new_context is the Context factory"),
]


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


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    best: tuple[int, int] | None = None
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and \
                    (best is None or len(name) > best[1]):
                best = (index, len(name))
    assert best is not None, f"{module} is in no layer: add it to LAYERS and the docs"
    return best[0]


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                skipped.update(id(n) for n in ast.walk(statement))
    return skipped


def _imports(path: Path, modules: set[str]) -> Iterator[tuple[int, str]]:
    return _imports_of(path.read_text(), _name(path), path.name == "__init__.py", modules)


def _imports_of(source: str, module: str, is_package: bool,
                modules: set[str]) -> Iterator[tuple[int, str]]:
    """``(line, llamakit module)`` for every import in ``source``, at module level or in a
    function, leaving out ``if TYPE_CHECKING:`` blocks (they never run)."""
    tree = ast.parse(source)
    skipped = _type_checking_nodes(tree)
    me = module.split(".")
    package = [] if me == ["__init__"] else me if is_package else me[:-1]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("llamakit."):
                    yield node.lineno, alias.name.removeprefix("llamakit.")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("llamakit"):
                target = node.module.removeprefix("llamakit").lstrip(".")
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}".strip(".")
                yield node.lineno, sub if sub in modules else (target or "__init__")


def test_imports_go_down_the_layers() -> None:
    """Every import (in functions too) goes to the module's own layer or a lower one,
    except the commented ALLOWED_UPWARD entries, each of which is still needed."""
    paths = {_name(p): p for p in _modules()}
    allowed = {(a, b) for a, b, _ in ALLOWED_UPWARD}
    upward, used = [], set()
    for module, path in sorted(paths.items()):
        for line, target in _imports(path, set(paths)):
            if _layer(target) <= _layer(module):
                continue
            if (module, target) in allowed:
                used.add((module, target))
                continue
            upward.append(f"{module}:{line} ({LAYERS[_layer(module)][0]}) imports {target} "
                          f"({LAYERS[_layer(target)][0]})")
    assert upward == []
    assert used == allowed, f"stale allow-list entries: {sorted(allowed - used)}"


def test_the_layer_check_sees_imports_in_functions() -> None:
    """The import reader finds function-level imports and skips TYPE_CHECKING blocks."""
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
              "    from .._model import Model\n"
              "def f():\n    from .._backends import resolve_backend\n    from . import lib\n")
    found = list(_imports_of(source, "_native.probe", False,
                             {"_native.lib", "_backends", "_model"}))
    assert found == [(5, "_backends"), (6, "_native.lib")]
    assert _layer("_backends") > _layer("_native.lib")


def test_handles_neither_build_nor_draw() -> None:
    """The handle layer imports no builder and no progress bar (the backend layer builds
    a missing variant and shows it)."""
    paths = {_name(p): p for p in _modules()}
    offenders = [f"{m}:{line} imports {t}" for m, p in paths.items() if m.startswith("_native")
                 for line, t in _imports(p, set(paths))
                 if t.startswith(("_build", "_progress", "_backends"))]
    assert offenders == []


def test_native_stage_names_match_their_builders() -> None:
    """The reserved names of the contract layer are exactly the handle layer's builders."""
    from llamakit._native.sampler import NATIVE_STAGES
    from llamakit._sampler_protocol import NATIVE_STAGE_NAMES, RESERVED_SAMPLER_NAMES

    assert frozenset(NATIVE_STAGES) == NATIVE_STAGE_NAMES
    assert NATIVE_STAGE_NAMES <= RESERVED_SAMPLER_NAMES
    assert {"top-k", "topk", "nucleus", "temperature"} <= RESERVED_SAMPLER_NAMES


def test_context_parts_build_on_the_core_without_casts() -> None:
    """No module casts ``self`` to Context: each feature subclasses ContextCore."""
    from llamakit._context import Context
    from llamakit._context_core import ContextCore

    casts = [str(p.relative_to(PACKAGE)) for p in _modules()
             if 'cast("Context"' in p.read_text() or "cast(Context" in p.read_text()]
    assert casts == []
    for base in Context.__mro__[1:]:
        if base.__module__.startswith("llamakit.") and base not in (ContextCore,) and \
                base.__name__ != "Owned":
            assert issubclass(base, ContextCore), base
