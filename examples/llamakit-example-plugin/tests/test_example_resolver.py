"""The ``models-dir:NAME`` model resolver, through ``llamakit.load_model``."""

from __future__ import annotations

from pathlib import Path

import llamakit
import pytest


def test_load_model_by_name_from_the_models_folder(tiny_model_path: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """load_model("models-dir:tiny") loads tiny.gguf from $LLAMAKIT_EXAMPLE_MODELS."""
    (tmp_path / "tiny.gguf").symlink_to(tiny_model_path)
    monkeypatch.setenv("LLAMAKIT_EXAMPLE_MODELS", str(tmp_path))
    assert llamakit.resolve_model("models-dir:tiny") == tmp_path / "tiny.gguf"
    with llamakit.load_model("models-dir:tiny", backend="cpu") as model:
        assert model.path == tmp_path / "tiny.gguf"
        assert model.n_vocab > 0
    with pytest.raises(llamakit.ModelNotFoundError, match="no absent.gguf"):
        llamakit.load_model("models-dir:absent", backend="cpu")
