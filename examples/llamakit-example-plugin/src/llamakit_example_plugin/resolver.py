"""The ``models-dir:NAME`` model resolver: ``NAME.gguf`` (or the first shard of a split
``NAME-00001-of-0000N.gguf``) in the folders of ``$LLAMAKIT_EXAMPLE_MODELS``."""

from __future__ import annotations

import os
from pathlib import Path

import llamakit

SCHEME = "models-dir:"
ENV = "LLAMAKIT_EXAMPLE_MODELS"


def resolve(reference: str) -> list[Path] | None:
    if not reference.startswith(SCHEME):
        return None  # not ours: another resolver, or the plain path, gets it
    name = reference[len(SCHEME):]
    folders = [Path(f) for f in os.environ.get(ENV, "").split(os.pathsep) if f]
    for folder in folders:
        single = folder / f"{name}.gguf"
        if single.is_file():
            return [single]
        shards = sorted(folder.glob(f"{name}-00001-of-*.gguf"))
        if shards:
            return shards[:1]
    raise llamakit.ModelNotFoundError(
        f"{reference}: no {name}.gguf in ${ENV} ({os.pathsep.join(map(str, folders)) or 'unset'})",
        path=reference)
