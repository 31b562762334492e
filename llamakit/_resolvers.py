"""Model references: ``load_model("hf://owner/repo:Q4_K_M")``, ``load_model("pkg://name")``.

``load_model`` (and ``from_config`` and the CLI, through ``open_model``) asks the registered
resolvers (``llamakit_register_model_resolvers``), in plugin precedence order, before it
treats its argument as a path: the first one that claims the reference gives the local
file. A ``[model] path`` of a config file or the command line is a ``Path`` first, and
``Path("hf://a/b")`` reads ``hf:/a/b``, which the Hugging Face resolver accepts too.

llamakit's own resolvers:

- ``hf``: ``hf://owner/repo/path/file.gguf`` and ``hf://owner/repo[:TAG]`` through
  ``huggingface_hub`` (``pip install 'llamakit[hf]'``), see ``_hf_resolver``.
- ``packages``: models that installed Python packages declare in the ``llamakit.models``
  entry-point group: ``pkg://NAME`` or the bare ``NAME``, see ``_package_resolver``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import ModelNotFoundError, PluginError

__all__ = ["resolve_model"]


def resolve_model(reference: str | os.PathLike[str]) -> Path:
    """The local GGUF file ``reference`` stands for: what the first resolver that claims it
    returns, else ``reference`` itself as a path."""
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
