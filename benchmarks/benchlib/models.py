"""The benchmark's synthetic models: shape-faithful, random weights, cached by shape.

The F16 file is written with ``llamakit.testing.write_llama_model`` (``reuse_weights=True``:
one random array per tensor shape, since speed does not depend on the values) and quantized
with ``llamakit.quantize`` using llama.cpp's default mix for each type (``Q4_0`` keeps
``output.weight`` in Q6_K, as ``llama-quantize`` does). Files live under
``~/.cache/llamakit/bench/models/`` and are reused while the shape and the llamakit
variant's key stay the same.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import llamakit
from llamakit._build.cache import cache_dir, file_lock, hash_json
from llamakit.testing import write_llama_model

__all__ = ["SHAPES", "model_path"]

SHAPES: dict[str, dict[str, Any]] = {
    # Llama 3.2 1B's shape (without tied embeddings): about 1.24 B parameters.
    "1b": {"n_embd": 2048, "n_layer": 16, "n_head": 32, "n_head_kv": 8, "n_ff": 8192,
           "vocab": "llama-bpe"},
    # For --quick: the same tokenizer (so sampling and detokenizing cost what they cost in
    # the 1B run), a small body.
    "small": {"n_embd": 512, "n_layer": 4, "n_head": 8, "n_head_kv": 4, "n_ff": 2048,
              "vocab": "llama-bpe"},
}


def model_path(shape: str, ftype: str, *, verbose: bool = True) -> Path:
    """The ``shape`` model in ``ftype`` (``F16``, ``Q4_0``, ``Q8_0``), written on first use."""
    params = SHAPES[shape]
    key = hash_json({"shape": params, "writer": 1})[:12]
    folder = cache_dir() / "bench" / "models"
    folder.mkdir(parents=True, exist_ok=True)
    f16 = folder / f"llama-{shape}-{key}-F16.gguf"
    with file_lock(folder / f".{shape}-{key}.lock"):
        if not f16.is_file():
            if verbose:
                print(f"writing {f16.name}", file=sys.stderr)
            write_llama_model(f16, dtype="f16", n_ctx_train=4096, reuse_weights=True,
                              name=f"llamakit bench {shape}", **params)
        if ftype.upper() == "F16":
            return f16
        target = folder / f"llama-{shape}-{key}-{ftype.upper()}.gguf"
        if not target.is_file():
            if verbose:
                print(f"quantizing {target.name}", file=sys.stderr)
            partial = target.with_name(f".{target.stem}.partial.gguf")
            llamakit.quantize(f16, partial, ftype.upper(), progress=False)
            partial.replace(target)
    return target


if __name__ == "__main__":
    for name in sys.argv[1:] or ["small"]:
        for ft in ("Q4_0", "Q8_0"):
            print(model_path(name, ft))
