"""Split (sharded) GGUF models written by llama.cpp's llama-gguf-split."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import llamakit
from llamakit.testing import build_tool

SHAPE = {"n_embd": 64, "n_layer": 2, "n_ff": 128, "seed": 7}


def _split(source: Path, prefix: Path, max_tensors: int) -> list[Path]:
    tool = build_tool("llama-gguf-split")
    subprocess.run([str(tool), "--split", "--split-max-tensors", str(max_tensors), str(source),
                    str(prefix)], check=True, capture_output=True)
    return sorted(prefix.parent.glob(f"{prefix.name}-*-of-*.gguf"))


@pytest.fixture(scope="module")
def unsplit(synthetic_model: Callable[..., Path]) -> Path:
    return synthetic_model(**SHAPE)


@pytest.fixture(scope="module")
def shards(unsplit: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The model as three shards (the synthetic model has 21 tensors)."""
    return _split(unsplit, tmp_path_factory.mktemp("shards") / "model", 8)


def _copy(paths: list[Path], folder: Path) -> list[Path]:
    folder.mkdir()
    return [Path(shutil.copy(p, folder / p.name)) for p in paths]


def test_first_shard_loads_all_and_generates_as_the_unsplit_model(
        shards: list[Path], unsplit: Path) -> None:
    """Loading the first shard loads every shard; greedy output equals the unsplit file's."""
    assert [p.name for p in shards] == [f"model-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert [p.name for p in llamakit.validate_gguf(shards[0]).shards] == [
        p.name for p in shards[1:]]
    outputs = []
    for path in (shards[0], unsplit):
        with llamakit.load_model(path, backend="cpu") as model, \
                model.new_context(n_ctx=128) as ctx:
            outputs.append(ctx.generate("Once upon a time", max_new_tokens=12,
                                        temperature=0).tokens)
            size = model.info.size
    assert outputs[0] == outputs[1] and len(outputs[0]) == 12
    assert size > 0


def test_missing_shard_is_named(shards: list[Path], tmp_path: Path) -> None:
    """A missing shard is a ShardError (a ModelLoadError) naming it."""
    copies = _copy(shards, tmp_path / "m")
    copies[2].unlink()
    with pytest.raises(llamakit.ShardError, match="model-00003-of-00003.gguf is missing") as info:
        llamakit.load_model(copies[0], backend="cpu")
    assert info.value.path == copies[2]
    assert isinstance(info.value, llamakit.ModelLoadError)


def test_shard_of_another_model_is_named(shards: list[Path], tmp_path: Path,
                                         synthetic_model: Callable[..., Path]) -> None:
    """A shard swapped in from another model's split is refused, naming that shard."""
    other = _split(synthetic_model(**{**SHAPE, "seed": 8, "n_layer": 3}),
                   tmp_path / "other", 8)
    assert len(other) == 4
    copies = _copy(shards, tmp_path / "m")
    shutil.copy(other[1], copies[1])
    with pytest.raises(llamakit.ShardError) as info:
        llamakit.load_model(copies[0], backend="cpu")
    assert info.value.path == copies[1]
    assert "model-00002-of-00003.gguf" in str(info.value)


def test_shard_in_the_wrong_place_is_named(shards: list[Path], tmp_path: Path) -> None:
    """Shards 2 and 3 swapped: the one whose split.no disagrees with its name is named."""
    copies = _copy(shards, tmp_path / "m")
    shutil.copy(shards[2], copies[1])
    shutil.copy(shards[1], copies[2])
    with pytest.raises(llamakit.ShardError, match="says it is shard 3") as info:
        llamakit.load_model(copies[0], backend="cpu")
    assert info.value.path == copies[1]


def test_later_shard_asks_for_the_first(shards: list[Path]) -> None:
    """Loading shard 2 says which file to load instead."""
    with pytest.raises(llamakit.ShardError, match="pass the first shard, model-00001-of-00003"):
        llamakit.load_model(shards[1], backend="cpu")


def test_renamed_first_shard_is_refused(shards: list[Path], tmp_path: Path) -> None:
    """A first shard whose name lost the -00001-of-0000N suffix cannot find the others."""
    copies = _copy(shards, tmp_path / "m")
    renamed = copies[0].rename(tmp_path / "m" / "model.gguf")
    with pytest.raises(llamakit.ShardError, match="-00001-of-00003.gguf"):
        llamakit.load_model(renamed, backend="cpu")
