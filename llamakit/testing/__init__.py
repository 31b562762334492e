"""Helpers for testing llamakit and its plugins: synthetic models and a reference decoder.

- :func:`write_llama_model` writes a small llama-architecture GGUF with random weights and
  a real tokenizer copied from one of llama.cpp's vocab files (:func:`vocab_path`).
- :func:`write_lora_adapter` writes a matching LoRA adapter with random weights.
- :func:`compile_greedy_reference` / :func:`run_greedy_reference` build and run a tiny C
  program that greedy-decodes with llama.cpp's C API directly, to cross-check llamakit.
- :func:`build_tool` builds one of llama.cpp's own tools (``llama-perplexity``,
  ``llama-gguf-split``, ``llama-tokenize``, ``llama-bench``) from the CPU variant's tree and
  flags, all in one shared, cached build folder.
- :func:`gemma3_270m_path` assembles (once, checksum-verified) the real Gemma 3 270M model
  that the setup installs from PyPI, for the ``real_model`` test tier.
- :mod:`llamakit.testing.fixtures` is a pytest plugin (registered through the ``pytest11``
  entry point) with the session fixtures ``llama_cpp_dir``, ``tiny_model_path``,
  ``tiny_bpe_model_path`` and the factory ``synthetic_model``.

The names are imported lazily, so importing this package (as the pytest plugin does) stays
cheap: numpy, gguf and the build machinery load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._lora import write_lora_adapter as write_lora_adapter
    from ._real import RealModelUnavailable as RealModelUnavailable
    from ._real import gemma3_270m_path as gemma3_270m_path
    from ._reference import (
        compile_greedy_reference as compile_greedy_reference,
    )
    from ._reference import (
        greedy_reference_source as greedy_reference_source,
    )
    from ._reference import (
        run_greedy_reference as run_greedy_reference,
    )
    from ._synthetic import MetadataValue as MetadataValue
    from ._synthetic import vocab_path as vocab_path
    from ._synthetic import write_llama_model as write_llama_model
    from ._tools import build_tool as build_tool

__all__ = [
    "MetadataValue",
    "RealModelUnavailable",
    "build_tool",
    "compile_greedy_reference",
    "gemma3_270m_path",
    "greedy_reference_source",
    "run_greedy_reference",
    "vocab_path",
    "write_llama_model",
    "write_lora_adapter",
]

_LAZY = {
    "RealModelUnavailable": "._real",
    "gemma3_270m_path": "._real",
    "MetadataValue": "._synthetic",
    "build_tool": "._tools",
    "vocab_path": "._synthetic",
    "write_llama_model": "._synthetic",
    "write_lora_adapter": "._lora",
    "compile_greedy_reference": "._reference",
    "greedy_reference_source": "._reference",
    "run_greedy_reference": "._reference",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
