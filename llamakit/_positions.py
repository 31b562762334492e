"""How many positions a model with learned absolute position embeddings can take.

Models such as BERT and GPT-2 look their positions up in ``position_embd.weight``; a
position past its last row makes ggml's ``get_rows`` assert and abort the process, and
llama.cpp does not check it (it pads n_ctx to a multiple of 256, well past a small
model's table). Code that places tokens checks this limit first.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._model import Model

__all__ = ["learned_positions"]

_TENSOR = "position_embd.weight"
_cache: weakref.WeakKeyDictionary[Model, int | None] = weakref.WeakKeyDictionary()


def learned_positions(model: Model) -> int | None:
    """The rows of the model's position embedding table; None when it has none."""
    if model in _cache:
        return _cache[model]
    from ._quantize.gguf_header import read_header, split_files

    found: int | None = None
    try:
        first = read_header(model.path)
        for header in [first, *[read_header(p) for p in split_files(first)[1:]]]:
            for tensor in header.tensors:
                if tensor.name == _TENSOR and len(tensor.shape) >= 2:
                    found = int(tensor.shape[1])
    except (OSError, ValueError):
        found = None  # the loaded model is what counts; its file is gone or unreadable
    _cache[model] = found
    return found
