"""Quantization recipes: the llamakit_register_quantizers hook, the facade, quantize(recipe=)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import llamakit
from llamakit import QuantizationRecipe, QuantizePlan, hookimpl
from llamakit._plugins.manager import PluginHost, get_plugin_host
from llamakit.testing import write_llama_model


class _Recipe:
    """A recipe built from a function, for the tests."""

    def __init__(self, name: str, prepare: Callable[[QuantizePlan], Any]) -> None:
        self.name = name
        self.description = f"test recipe {name}"
        self._prepare = prepare

    def prepare(self, plan: QuantizePlan) -> QuantizePlan:
        return self._prepare(plan)  # type: ignore[no-any-return]


@pytest.fixture
def register() -> Iterator[Callable[..., None]]:
    """``register(*recipes)``: add them to the process-wide host for this test only."""
    host = get_plugin_host()
    names: list[str] = []

    def add(*recipes: object) -> None:
        class Plugin:
            @hookimpl
            def llamakit_register_quantizers(self) -> Sequence[object]:
                return list(recipes)

        name = f"test-recipes-{len(names)}"
        host.register(Plugin(), name=name)
        names.append(name)

    yield add
    for name in names:
        host.unregister(name)


def test_the_core_registers_its_recipe() -> None:
    """The example recipe comes from the built-in plugin 'llamakit'."""
    entry = PluginHost().quantizers()["edge-layers-q8"]
    assert entry.plugin == "llamakit"
    assert isinstance(entry.recipe, QuantizationRecipe)
    assert "edge-layers-q8" in llamakit.quantization_recipes()


def test_disabling_the_core_plugin_removes_it() -> None:
    """LLAMAKIT_DISABLE_PLUGINS=llamakit leaves the built-in recipes out."""
    assert "edge-layers-q8" not in PluginHost(disabled=["llamakit"]).quantizers()


def test_edge_layers_recipe_keeps_the_end_blocks_at_q8_0(
        synthetic_model: Callable[..., Path], tmp_path: Path) -> None:
    """edge-layers-q8 gives blocks 0 and n-1 Q8_0 and leaves the middle at the ftype."""
    source = synthetic_model(dtype="f16", n_embd=256, n_ff=512, n_layer=3)
    result = llamakit.quantize(source, tmp_path / "edges.gguf", "Q4_0",
                               recipe="edge-layers-q8", progress=False)
    types = result.tensor_types
    assert result.recipe == "edge-layers-q8"
    for block, expected in ((0, "q8_0"), (1, "q4_0"), (2, "q8_0")):
        for name in ("attn_q", "attn_k", "ffn_up", "ffn_down"):
            assert types[f"blk.{block}.{name}.weight"] == expected, (block, name)
    with llamakit.load_model(result.dst, backend="cpu") as model:  # type: ignore[arg-type]
        assert model.info.n_layer == 3


def test_caller_patterns_win_over_the_recipe(f16_model: Path, tmp_path: Path) -> None:
    """tensor_types given to quantize() come before the recipe's own."""
    result = llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q4_0",
                               recipe="edge-layers-q8", tensor_types={"ffn_up": "q5_0"},
                               progress=False)
    assert result.tensor_types["blk.0.ffn_up.weight"] == "q5_0"
    assert result.tensor_types["blk.0.ffn_down.weight"] == "q8_0"


def test_recipe_sees_the_plan_and_may_change_the_type(
        f16_model: Path, tmp_path: Path, register: Callable[..., None]) -> None:
    """A recipe gets the tensors and metadata and can choose another file type."""
    seen: list[QuantizePlan] = []
    workdir_existed: list[bool] = []

    def prepare(plan: QuantizePlan) -> QuantizePlan:
        seen.append(plan)
        workdir_existed.append(plan.workdir.is_dir())
        return plan.replace(ftype="q8_0")

    register(_Recipe("to-q8", prepare))
    result = llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q4_K_M", recipe="to-q8",
                               progress=False)
    plan = seen[0]
    assert plan.ftype == "Q4_K_M" and plan.src == f16_model and plan.n_layer == 2
    assert plan.metadata["general.architecture"] == "llama"
    token_embd = next(t for t in plan.tensors if t.name == "token_embd.weight")
    assert token_embd.shape == (256, 32000) and token_embd.type == "f16"
    assert token_embd.n_bytes == 256 * 32000 * 2
    assert workdir_existed == [True] and plan.workdir.parent == tmp_path
    assert result.ftype == "Q8_0" and result.tensor_types["blk.0.attn_q.weight"] == "q8_0"
    assert not plan.workdir.exists()


def test_recipe_may_rewrite_the_source(f16_model: Path, tmp_path: Path,
                                       register: Callable[..., None]) -> None:
    """A pre-pass writes a new source into workdir; quantize reads that one."""
    def prepare(plan: QuantizePlan) -> QuantizePlan:
        rewritten = write_llama_model(plan.workdir / "prepass.gguf", dtype="f16", n_embd=256,
                                      n_ff=512, n_layer=3)
        return plan.replace(src=rewritten)

    register(_Recipe("prepass", prepare))
    result = llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q8_0", recipe="prepass",
                               progress=False)
    assert result.src == f16_model
    assert "blk.2.attn_q.weight" in result.tensor_types
    assert [p.name for p in tmp_path.iterdir()] == ["out.gguf"]


@pytest.mark.parametrize("prepare, match", [
    (lambda plan: None, "returned NoneType"),
    (lambda plan: plan.replace(tensor_types=(("attn", "q9"),)), "not a ggml type"),
    (lambda plan: plan.replace(src=Path("/nonexistent.gguf")), "not found"),
    (lambda plan: plan.replace(ftype="Q7"), "unknown quantization type"),
])
def test_recipe_output_is_checked(f16_model: Path, tmp_path: Path,
                                  register: Callable[..., None], prepare: Any,
                                  match: str) -> None:
    """What a recipe returns is validated like the caller's arguments."""
    register(_Recipe("checked", prepare))
    with pytest.raises((llamakit.QuantizeError, llamakit.PluginError), match=match):
        llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q8_0", recipe="checked")
    assert list(tmp_path.iterdir()) == []


def test_raising_recipe_names_its_plugin(f16_model: Path, tmp_path: Path,
                                         register: Callable[..., None]) -> None:
    """An exception inside prepare() is a PluginError naming the recipe and plugin."""
    def prepare(plan: QuantizePlan) -> QuantizePlan:
        raise RuntimeError("boom")

    register(_Recipe("raises", prepare))
    with pytest.raises(llamakit.PluginError, match="'raises'.*test-recipes-0.*boom"):
        llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q8_0", recipe="raises")


def test_duplicate_recipe_names_both_plugins() -> None:
    """Two plugins registering one recipe name is an error naming both."""
    class First:
        @hookimpl
        def llamakit_register_quantizers(self) -> Sequence[object]:
            return [_Recipe("same", lambda plan: plan)]

    class Second:
        @hookimpl
        def llamakit_register_quantizers(self) -> Sequence[object]:
            return [_Recipe("same", lambda plan: plan)]

    host = PluginHost(load_entry_points=False)
    host.register(First(), name="first-plugin")
    host.register(Second(), name="second-plugin")
    with pytest.raises(llamakit.PluginError) as info:
        host.quantizers()
    assert "first-plugin" in str(info.value) and "second-plugin" in str(info.value)


@pytest.mark.parametrize("bad", ["edge", object(), _Recipe("", lambda plan: plan)])
def test_invalid_registration_names_the_plugin(bad: object) -> None:
    """Something that is not a recipe is a PluginError naming the plugin."""
    class Bad:
        @hookimpl
        def llamakit_register_quantizers(self) -> Sequence[object]:
            return [bad]

    host = PluginHost(load_entry_points=False)
    host.register(Bad(), name="bad-plugin")
    with pytest.raises(llamakit.PluginError, match="bad-plugin"):
        host.quantizers()


def test_registered_recipe_is_tagged_with_its_plugin() -> None:
    """The facade reports which plugin registered each recipe."""
    class Plugin:
        @hookimpl
        def llamakit_register_quantizers(self) -> Sequence[object]:
            return [_Recipe("mine", lambda plan: plan)]

    host = PluginHost(load_entry_points=False)
    host.register(Plugin(), name="my-plugin")
    assert host.quantizers()["mine"].plugin == "my-plugin"
    host.unregister("my-plugin")
    assert "mine" not in host.quantizers()
