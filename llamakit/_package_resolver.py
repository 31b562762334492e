"""The ``packages`` model resolver: GGUF models that installed Python packages declare in
the ``llamakit.models`` entry-point group (name = the model's name; value = a path, or a
function returning the path or the list of shard paths). ``pkg://NAME`` or the bare
``NAME`` loads one."""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._errors import ModelNotFoundError
from ._resolver_spec import ModelResolver

__all__ = ["MODELS_ENTRY_POINT_GROUP", "package_models", "package_resolver"]

#: The entry-point group in which a package declares the GGUF models it ships.
MODELS_ENTRY_POINT_GROUP = "llamakit.models"
_PKG_SCHEME = "pkg://"


def package_models() -> dict[str, importlib.metadata.EntryPoint]:
    """The models installed packages declare (``llamakit.models`` entry points), by name."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for entry_point in importlib.metadata.entry_points(group=MODELS_ENTRY_POINT_GROUP):
        found.setdefault(entry_point.name, entry_point)
    return found


def _package_model(reference: str) -> list[Path] | None:
    name = reference[len(_PKG_SCHEME):] if reference.startswith(_PKG_SCHEME) else reference
    entry_point = package_models().get(name)
    if entry_point is None:
        if reference.startswith(_PKG_SCHEME):
            known = ", ".join(sorted(package_models())) or "none installed"
            raise ModelNotFoundError(f"no installed package declares the model {name!r} "
                                     f"(entry-point group {MODELS_ENTRY_POINT_GROUP!r}; "
                                     f"declared: {known})", path=reference)
        return None
    where = f"{entry_point.value} (distribution " \
            f"{entry_point.dist.name if entry_point.dist else '?'})"
    target: Any = entry_point.load()
    value = target() if callable(target) else target
    paths: list[Any] = list(value) if isinstance(value, (list, tuple)) else [value]
    if not paths or not all(isinstance(p, (str, os.PathLike)) for p in paths):
        raise ModelNotFoundError(f"model {name!r} of {where} gave {value!r}, not a path",
                                 path=reference)
    files = [Path(os.fspath(p)) for p in paths]
    if not files[0].is_file():
        raise ModelNotFoundError(f"model {name!r} of {where} names {files[0]}, which does "
                                 "not exist", path=files[0])
    return files


def package_resolver() -> ModelResolver:
    """The resolver of models that Python packages declare (see the module)."""
    resolve: Callable[[str], list[Path] | None] = _package_model
    return ModelResolver("packages", resolve,
                         description="models of installed packages: pkg://NAME or NAME "
                         f"(entry-point group {MODELS_ENTRY_POINT_GROUP!r})")
