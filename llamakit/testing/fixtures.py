"""pytest plugin: fixtures that give tests small synthetic GGUF models.

Registered through the ``pytest11`` entry point ``llamakit``, so any project that installs
llamakit (plugin authors included) gets these fixtures without a ``conftest.py``:

``llama_cpp_dir`` (session)
    Path of the llama.cpp source tree llamakit builds from (materialised on first use).
``tiny_model_path`` (session)
    A 2-layer, n_embd 64 llama model with random weights and the ``llama-spm`` tokenizer
    (32000 tokens); :func:`llamakit.testing.write_llama_model` with its defaults.
``tiny_bpe_model_path`` (session)
    The same shape with the ``llama-bpe`` (Llama 3) tokenizer.
``synthetic_model`` (session)
    A factory: ``synthetic_model(**kwargs)`` takes the keyword arguments of
    :func:`~llamakit.testing.write_llama_model` and returns the path of a model written once
    per session for each distinct set of arguments.

Importing this module is cheap: nothing is imported beyond pytest, and nothing is built or
written until a fixture runs.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

__all__ = ["llama_cpp_dir", "synthetic_model", "tiny_bpe_model_path", "tiny_model_path"]

#: What ``synthetic_model`` returns: ``(**write_llama_model_kwargs) -> Path``.
SyntheticModelFactory = Callable[..., Path]


def _freeze(value: Any) -> Any:
    """A hashable, order-independent form of an argument value (for the cache key)."""
    if isinstance(value, Mapping):
        return ("mapping", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("sequence", tuple(_freeze(v) for v in value))
    if isinstance(value, Path):
        return ("path", str(value))
    return (type(value).__name__, value)


def _label(arguments: Mapping[str, Any]) -> str:
    vocab = str(arguments.get("vocab", "model"))
    stem = Path(vocab).stem if vocab.endswith(".gguf") else Path(vocab).name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:40] or "model"


@pytest.fixture(scope="session")
def llama_cpp_dir() -> Path:
    """Path of llama.cpp's source tree (``$LLAMAKIT_LLAMA_CPP_DIR`` or the pinned one)."""
    from llamakit._build.source import source_tree

    return source_tree().path


@pytest.fixture(scope="session")
def synthetic_model(tmp_path_factory: pytest.TempPathFactory) -> SyntheticModelFactory:
    """Factory of synthetic models, cached per session by their arguments.

    ``synthetic_model()`` is the tiny default model; ``synthetic_model(vocab="qwen2",
    n_layer=4, dtype="f16")`` another. Arguments are normalised against
    ``write_llama_model``'s defaults, so ``synthetic_model(seed=0)`` is the same file as
    ``synthetic_model()``. The returned files are shared: do not modify them.
    """
    from ._synthetic import write_llama_model

    signature = inspect.signature(write_llama_model)
    root = tmp_path_factory.mktemp("llamakit-models")
    cache: dict[Any, Path] = {}
    lock = threading.Lock()

    def make(**kwargs: Any) -> Path:
        if "path" in kwargs:
            raise TypeError("synthetic_model() chooses the path itself; do not pass 'path'")
        bound = signature.bind(root / "unused.gguf", **kwargs)
        bound.apply_defaults()
        arguments = {k: v for k, v in bound.arguments.items() if k != "path"}
        key = _freeze(arguments)
        with lock:
            cached = cache.get(key)
            if cached is None:
                digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
                cached = write_llama_model(root / f"{_label(arguments)}-{digest}.gguf",
                                           **arguments)
                cache[key] = cached
        return cached

    return make


@pytest.fixture(scope="session")
def tiny_model_path(synthetic_model: SyntheticModelFactory) -> Path:
    """A tiny random-weight llama model with the ``llama-spm`` tokenizer (written once)."""
    return synthetic_model()


@pytest.fixture(scope="session")
def tiny_bpe_model_path(synthetic_model: SyntheticModelFactory) -> Path:
    """A tiny random-weight llama model with the ``llama-bpe`` tokenizer (written once)."""
    return synthetic_model(vocab="llama-bpe")
