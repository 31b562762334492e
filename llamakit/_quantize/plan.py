"""What a quantization is about to do (``QuantizePlan``), and the recipes that change it."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = ["QuantizationRecipe", "QuantizePlan", "RecipeEntry", "TensorInfo"]

MetadataScalar = str | int | float | bool


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the source model, as its GGUF header describes it."""

    name: str
    shape: tuple[int, ...]
    """ggml order: ``shape[0]`` is the row length (``ne0``)."""
    type: str
    """ggml type name: ``"f16"``, ``"q8_0"``, ..."""
    n_bytes: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def block(self) -> int | None:
        """The transformer block (``blk.<n>.``) it belongs to, None outside the blocks."""
        match = re.match(r"blk\.(\d+)\.", self.name)
        return int(match.group(1)) if match else None


@dataclass(frozen=True)
class QuantizePlan:
    """What ``llamakit.quantize`` is about to run, as a recipe sees it.

    A recipe returns a changed copy (``plan.replace(...)``); everything it returns is
    validated again before llama.cpp runs. ``tensor_types`` are ``(regex, ggml type)``
    pairs searched in each tensor name, first match wins (llama.cpp's ``--tensor-type``).
    A recipe that rewrites the model (a Python pre-pass) writes the new file into
    ``workdir`` and returns the plan with ``src`` pointing at it.
    """

    src: Path
    ftype: str
    """Canonical llama.cpp file type name (``"Q4_K_M"``)."""
    tensors: tuple[TensorInfo, ...]
    metadata: Mapping[str, MetadataScalar]
    """The source's scalar and string key/value pairs."""
    tensor_types: tuple[tuple[str, str], ...] = ()
    output_tensor_type: str | None = None
    token_embedding_type: str | None = None
    quantize_output_tensor: bool = True
    allow_requantize: bool = False
    pure: bool = False
    workdir: Path = Path(".")
    """A private folder on the destination's file system, deleted afterwards."""

    def replace(self, **changes: Any) -> QuantizePlan:
        return dataclasses.replace(self, **changes)

    @property
    def n_layer(self) -> int:
        """Transformer blocks: ``<arch>.block_count``, else counted from tensor names."""
        arch = self.metadata.get("general.architecture")
        count = self.metadata.get(f"{arch}.block_count")
        if isinstance(count, int) and not isinstance(count, bool):
            return count
        blocks = {t.block for t in self.tensors if t.block is not None}
        return max(blocks) + 1 if blocks else 0


@runtime_checkable
class QuantizationRecipe(Protocol):
    """A named way to quantize, registered through ``llamakit_register_quantizers``.

    ``prepare`` receives the plan built from ``quantize()``'s arguments and returns the
    plan to run: it may choose per-tensor types, change the file type, or write a
    transformed source into ``plan.workdir``. It must not modify files it did not create.
    """

    name: str
    description: str

    def prepare(self, plan: QuantizePlan) -> QuantizePlan: ...


class RecipeEntry(NamedTuple):
    """A registered recipe and the plugin that registered it."""

    plugin: str
    recipe: QuantizationRecipe
