"""Control vectors: llama.cpp's GGUF format, applying, clearing, refusing misfits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

import llamakit
from llamakit._control_vector import read_control_vector

SHAPE = {"n_embd": 64, "n_layer": 3, "n_ff": 128, "seed": 11}
PROMPT = "The quick brown fox"


def write_control_vector(path: Path, directions: dict[str, np.ndarray]) -> Path:
    """A control vector file as llama.cpp's cvector-generator writes it."""
    writer = GGUFWriter(path, arch="controlvector")
    writer.add_string("controlvector.model_hint", "llama")
    writer.add_uint32("controlvector.layer_count", len(directions))
    for name, values in directions.items():
        writer.add_tensor(name, values.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def model(synthetic_model: Callable[..., Path]) -> llamakit.Model:
    with llamakit.load_model(synthetic_model(**SHAPE), backend="cpu") as loaded:
        yield loaded


def _greedy(ctx: llamakit.Context) -> list[int]:
    return ctx.generate(PROMPT, max_new_tokens=10, temperature=0).tokens


def test_file_changes_the_output_and_clearing_restores_it(model: llamakit.Model,
                                                          tmp_path: Path) -> None:
    """A strong vector changes greedy output; clearing it gives the original output back."""
    rng = np.random.default_rng(0)
    path = write_control_vector(tmp_path / "cv.gguf", {
        "direction.1": rng.standard_normal(64), "direction.2": rng.standard_normal(64)})
    assert sorted(read_control_vector(path)) == [1, 2]
    with model.new_context(n_ctx=128) as ctx:
        plain = _greedy(ctx)
        ctx.apply_control_vector(path, strength=4.0)
        steered = _greedy(ctx)
        ctx.clear_control_vector()
        assert _greedy(ctx) == plain
    assert steered != plain


def test_array_mapping_and_file_agree(model: llamakit.Model, tmp_path: Path) -> None:
    """An array (row i = layer i + 1), a mapping and a file with the same values agree;
    strength scales, and two tensors of one layer add up as in llama.cpp."""
    rng = np.random.default_rng(1)
    direction = rng.standard_normal(64).astype(np.float32)
    half = write_control_vector(tmp_path / "half.gguf", {"direction.2": direction / 2})
    with model.new_context(n_ctx=128) as ctx:
        ctx.apply_control_vector(np.stack([np.zeros(64), direction]), strength=3.0)
        from_array = _greedy(ctx)
        ctx.apply_control_vector({2: direction * 3})
        assert _greedy(ctx) == from_array
        ctx.apply_control_vector(half, strength=6.0)
        assert _greedy(ctx) == from_array
        ctx.apply_control_vector({2: direction * 3}, layers=[1])  # layer 2 left out
        ctx_plain = _greedy(ctx)
        ctx.clear_control_vector()
        assert _greedy(ctx) == ctx_plain


@pytest.mark.parametrize("source, match", [
    ({1: np.ones(32)}, "32 values per layer, but this model's n_embd is 64"),
    ({3: np.ones(64)}, "layer 3, but this model takes layers 1..2"),
    ({0: np.ones(64)}, "layer 0"),
    (np.ones(64), "2-D"),
    ({1: np.full(64, np.nan)}, "NaN"),
], ids=["width", "layer-past-end", "layer-zero", "one-dimensional", "nan"])
def test_misfits_are_typed_errors(model: llamakit.Model, source: object, match: str) -> None:
    """Wrong width, layers or values raise ControlVectorError before llama.cpp sees them."""
    with model.new_context(n_ctx=64) as ctx, \
            pytest.raises(llamakit.ControlVectorError, match=match):
        ctx.apply_control_vector(source)  # type: ignore[arg-type]


def test_bad_files_and_layer_choices_are_typed_errors(model: llamakit.Model,
                                                      tmp_path: Path) -> None:
    """A file with a layer-0 or misnamed tensor, a missing file, or layers outside the
    model are ControlVectorErrors naming the problem."""
    zero = write_control_vector(tmp_path / "zero.gguf", {"direction.0": np.ones(64)})
    named = write_control_vector(tmp_path / "named.gguf", {"steer.1": np.ones(64)})
    with model.new_context(n_ctx=64) as ctx:
        for path in (zero, named):
            with pytest.raises(llamakit.ControlVectorError, match="direction.<layer>"):
                ctx.apply_control_vector(path)
        with pytest.raises(llamakit.ControlVectorError, match="not found"):
            ctx.apply_control_vector(tmp_path / "absent.gguf")
        with pytest.raises(llamakit.ControlVectorError, match="layers: 3 is not"):
            ctx.apply_control_vector({1: np.ones(64)}, layers=range(1, 6))
        assert isinstance(llamakit.ControlVectorError("x"), ValueError)
