"""LoRA adapters: load, apply with a scale, remove, compose, and refuse what does not fit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import llamakit
from llamakit.testing import write_lora_adapter

TEXT = "Hello world, this is a test"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("lora")
    return (write_lora_adapter(folder / "a.gguf", seed=1),
            write_lora_adapter(folder / "b.gguf", seed=2, targets=("attn_k", "ffn_up")))


@pytest.fixture
def ectx(model: llamakit.Model) -> Iterator[llamakit.Context]:
    with model.new_context(n_ctx=128, embeddings=True) as context:
        yield context


def test_adapter_metadata_and_alpha(model: llamakit.Model, adapters: tuple[Path, Path]) -> None:
    """A loaded adapter exposes its GGUF metadata and alpha."""
    with model.load_lora(adapters[0]) as adapter:
        assert adapter.alpha == 8.0
        assert adapter.metadata["adapter.type"] == "lora"
    assert adapter.closed
    with pytest.raises(llamakit.ClosedError):
        adapter.metadata  # noqa: B018


def test_apply_scale_remove_and_clear(model: llamakit.Model, ectx: llamakit.Context,
                                      adapters: tuple[Path, Path]) -> None:
    """Applying changes the output; scale 0, remove and clear give the base back exactly."""
    base = ectx.embeddings(TEXT, normalize=False)
    with model.load_lora(adapters[0]) as adapter:
        ectx.apply_lora(adapter)
        assert ectx.loras == {adapter: 1.0}
        changed = ectx.embeddings(TEXT, normalize=False)
        assert np.abs(changed - base).max() > 1e-3
        ectx.apply_lora(adapter, 0.0)
        np.testing.assert_array_equal(ectx.embeddings(TEXT, normalize=False), base)
        ectx.apply_lora(adapter, 1.0)
        ectx.remove_lora(adapter)
        assert ectx.loras == {}
        np.testing.assert_array_equal(ectx.embeddings(TEXT, normalize=False), base)
        ectx.apply_lora(adapter, 0.5)
        ectx.clear_loras()
        np.testing.assert_array_equal(ectx.embeddings(TEXT, normalize=False), base)
        with pytest.raises(llamakit.LoraError, match="not applied"):
            ectx.remove_lora(adapter)


def test_two_adapters_compose(model: llamakit.Model, ectx: llamakit.Context,
                              adapters: tuple[Path, Path]) -> None:
    """Two adapters at once differ from either alone; the order of applying does not matter."""
    with model.load_lora(adapters[0]) as a, model.load_lora(adapters[1]) as b:
        ectx.apply_lora(a)
        only_a = ectx.embeddings(TEXT, normalize=False)
        ectx.apply_lora(b)
        both = ectx.embeddings(TEXT, normalize=False)
        ectx.clear_loras()
        ectx.apply_lora(b)
        only_b = ectx.embeddings(TEXT, normalize=False)
        ectx.apply_lora(a)
        both_again = ectx.embeddings(TEXT, normalize=False)
        assert np.abs(both - only_a).max() > 1e-3 and np.abs(both - only_b).max() > 1e-3
        np.testing.assert_allclose(both, both_again, rtol=1e-5, atol=1e-5)


def test_generation_uses_the_adapter(model: llamakit.Model, ctx: llamakit.Context,
                                     adapters: tuple[Path, Path]) -> None:
    """Greedy text changes under a strong adapter and returns once it is removed."""
    base = ctx.generate(TEXT, max_new_tokens=8, temperature=0).tokens
    with model.load_lora(adapters[0]) as adapter:
        ctx.apply_lora(adapter, 4.0)
        assert ctx.generate(TEXT, max_new_tokens=8, temperature=0).tokens != base
    assert ctx.loras == {}  # closing the adapter detached it
    assert ctx.generate(TEXT, max_new_tokens=8, temperature=0).tokens == base


def test_wrong_shape_and_wrong_files_raise(model: llamakit.Model, tmp_path: Path,
                                           tiny_model_path: Path) -> None:
    """Adapters for other shapes, models, missing files and non-GGUF files are LoraError."""
    wrong = write_lora_adapter(tmp_path / "wrong.gguf", n_embd=32, n_ff=64)
    with pytest.raises(llamakit.LoraError, match="shape"):
        model.load_lora(wrong)
    with pytest.raises(llamakit.LoraError, match="adapter"):
        model.load_lora(tiny_model_path)  # a model, not an adapter
    other_arch = write_lora_adapter(tmp_path / "arch.gguf", architecture="gpt2")
    with pytest.raises(llamakit.LoraError):
        model.load_lora(other_arch)
    with pytest.raises(llamakit.LoraError, match="not found"):
        model.load_lora(tmp_path / "missing.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all")
    with pytest.raises(llamakit.LoraError, match="GGUF"):
        model.load_lora(junk)


def test_adapter_of_another_model_is_refused(model: llamakit.Model, tiny_model_path: Path,
                                             adapters: tuple[Path, Path]) -> None:
    """An adapter loaded for one Model cannot be applied to another Model's context."""
    with llamakit.load_model(tiny_model_path, backend="cpu") as other, \
            other.load_lora(adapters[0]) as adapter, model.new_context(n_ctx=64) as ctx, \
            pytest.raises(llamakit.LoraError, match="another model"):
        ctx.apply_lora(adapter)


def test_closing_the_model_closes_its_adapters(tiny_model_path: Path,
                                               adapters: tuple[Path, Path]) -> None:
    """Model.close() frees applied adapters and contexts in a safe order."""
    model = llamakit.load_model(tiny_model_path, backend="cpu")
    adapter = model.load_lora(adapters[0])
    ctx = model.new_context(n_ctx=64)
    ctx.apply_lora(adapter)
    model.close()
    assert adapter.closed and ctx.closed


def test_bad_scale_raises(model: llamakit.Model, ctx: llamakit.Context,
                          adapters: tuple[Path, Path]) -> None:
    """A non-finite scale is refused."""
    with model.load_lora(adapters[0]) as adapter:
        for scale in (float("nan"), float("inf"), "1"):
            with pytest.raises(llamakit.LoraError):
                ctx.apply_lora(adapter, scale)  # type: ignore[arg-type]
