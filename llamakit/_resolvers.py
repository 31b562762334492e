"""Model references: ``load_model("hf://owner/repo:Q4_K_M")``, ``load_model("pkg://name")``.

``load_model`` asks the registered resolvers (``llamakit_register_model_resolvers``), in
plugin precedence order, before it treats its argument as a path: the first one that
claims the reference gives the local file. A ``str`` is offered to every resolver; a
``pathlib.Path`` only when no such file exists (a ``[model] path`` in a config file or on
the command line is a ``Path``, and ``Path("hf://a/b")`` reads ``hf:/a/b``, which the
Hugging Face resolver accepts too).

llamakit's own resolvers:

- ``hf``: ``hf://owner/repo/path/file.gguf`` and ``hf://owner/repo[:TAG]`` through
  ``huggingface_hub`` (``pip install 'llamakit[hf]'``), see ``_hf_resolver``.
- ``packages``: models that installed Python packages declare in the ``llamakit.models``
  entry-point group: ``pkg://NAME`` or the bare ``NAME``.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._errors import ModelNotFoundError, PluginError
from ._resolver_spec import ModelResolver

__all__ = ["MODELS_ENTRY_POINT_GROUP", "package_models", "package_resolver", "resolve_model"]

#: The entry-point group in which a package declares the GGUF models it ships.
MODELS_ENTRY_POINT_GROUP = "llamakit.models"
_PKG_SCHEME = "pkg://"


def resolve_model(reference: str | os.PathLike[str]) -> Path:
    """The local GGUF file ``reference`` stands for: what the first resolver that claims it
    returns, else ``reference`` itself as a path."""
    if isinstance(reference, os.PathLike) and (
            not isinstance(reference, Path) or reference.exists()):
        return Path(os.fspath(reference))
    text = os.fspath(reference)
    if not isinstance(text, str):
        return Path(os.fsdecode(text))
    from ._plugins.manager import get_plugin_host

    for resolver in get_plugin_host().model_resolvers().values():
        try:
            found = resolver.resolve(text)
        except (ModelNotFoundError, PluginError):
            raise
        except Exception as exc:
            raise ModelNotFoundError(
                f"model resolver {resolver.name!r} (plugin {resolver.plugin!r}) failed on "
                f"{text!r}: {type(exc).__name__}: {exc}", path=text) from exc
        if found is None:
            continue
        paths = [Path(os.fspath(p)) for p in found]
        if not paths:
            raise ModelNotFoundError(f"model resolver {resolver.name!r} (plugin "
                                     f"{resolver.plugin!r}) found no file for {text!r}",
                                     path=text)
        return paths[0]
    return Path(text)


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
