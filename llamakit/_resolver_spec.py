"""``ModelResolver``: maps a model reference (a URI or a name) to local GGUF files."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["ModelResolver", "ResolveResult"]

#: What a resolver returns: the local files of the model (the file to load first; the other
#: shards of a split model may follow), or None when the reference is not one it handles.
ResolveResult = Sequence[str | os.PathLike[str]] | None


@dataclass(frozen=True)
class ModelResolver:
    """A way to name models, registered through ``llamakit_register_model_resolvers``.

    ``resolve(reference)`` gets the string given to ``load_model`` and returns None when
    the reference is not of its kind (another resolver, or the plain path, gets it), else
    the local paths of the model: the GGUF file to load first (for a split model, its first
    shard, with every shard present beside it). It may download or assemble files first.
    A reference of its kind that it cannot provide raises ``ModelNotFoundError`` saying why.
    ``plugin`` is filled in by llamakit with the registering plugin's name.
    """

    name: str
    resolve: Callable[[str], ResolveResult]
    description: str = ""
    plugin: str = ""
