"""Model resolvers: the hook, the hf:// resolver (offline, over a Hub cache built here) and
models declared by Python packages (a fake distribution on sys.path)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import llamakit
from llamakit._hf_resolver import best_model_file, parse_hf_reference
from llamakit._plugins.manager import PluginHost
from llamakit.testing import build_tool

REPO_FILES = ["README.md", "m-Q8_0.gguf", "m-Q4_K_M.gguf", "mmproj-m-Q4_K_M.gguf",
              "big/m-F16-00001-of-00002.gguf", "big/m-F16-00002-of-00002.gguf"]


def test_registered_resolver_is_tagged_with_its_plugin(host: PluginHost,
                                                       tiny_model_path: Path) -> None:
    """A plugin's resolver (llamakit_register_model_resolvers) is asked before the path,
    tagged with its plugin, and comes after llamakit's own in precedence."""
    asked: list[str] = []

    def resolve(reference: str) -> list[Path] | None:
        asked.append(reference)
        return [tiny_model_path] if reference == "mine:tiny" else None

    class Plugin:
        @llamakit.hookimpl
        def llamakit_register_model_resolvers(self) -> list[llamakit.ModelResolver]:
            return [llamakit.ModelResolver("mine", resolve, "test")]

    host.register(Plugin(), name="resolver-plugin")
    resolvers = host.model_resolvers()
    assert list(resolvers)[:2] == ["hf", "packages"]
    assert resolvers["mine"].plugin == "resolver-plugin"
    assert resolvers["hf"].plugin == "llamakit"
    assert host.registrations()["resolver-plugin"] == {"model resolvers": ["mine"]}
    with llamakit.load_model("mine:tiny", backend="cpu") as model:
        assert model.path == tiny_model_path
    assert llamakit.resolve_model(str(tiny_model_path)) == tiny_model_path
    assert asked == ["mine:tiny", str(tiny_model_path)]


def test_resolver_errors_name_the_resolver(host: PluginHost) -> None:
    """A resolver that raises something other than ModelNotFoundError is reported as a
    ModelNotFoundError naming it and its plugin."""
    def broken(reference: str) -> list[Path] | None:
        raise RuntimeError("disk on fire")

    class Plugin:
        @llamakit.hookimpl
        def llamakit_register_model_resolvers(self) -> list[llamakit.ModelResolver]:
            return [llamakit.ModelResolver("broken", broken)]

    host.register(Plugin(), name="broken-plugin")
    with pytest.raises(llamakit.ModelNotFoundError, match="'broken' .plugin 'broken-plugin'.*"
                                                          "disk on fire"):
        llamakit.resolve_model("anything")


@pytest.mark.parametrize("reference, expected", [
    ("hf://o/r", ("o/r", None, None)), ("hf://o/r:Q8_0", ("o/r", None, "Q8_0")),
    ("hf://o/r/sub/f.gguf", ("o/r", "sub/f.gguf", None)), ("hf:/o/r:q4_k_m", ("o/r", None,
                                                                              "q4_k_m")),
    ("model.gguf", None)])
def test_hf_references_parse(reference: str, expected: object) -> None:
    assert parse_hf_reference(reference) == expected


@pytest.mark.parametrize("tag, expected", [
    (None, "m-Q4_K_M.gguf"), ("Q8_0", "m-Q8_0.gguf"), ("q4_k_m", "m-Q4_K_M.gguf"),
    ("F16", "big/m-F16-00001-of-00002.gguf"), ("Q2_K", None)])
def test_quant_tag_selection_follows_llama_cpp(tag: str | None, expected: str | None) -> None:
    """As llama.cpp's -hf: TAG then [.-], any case; mmproj files and later shards never;
    Q4_K_M, then Q8_0, when no tag is given."""
    assert best_model_file(REPO_FILES, tag) == expected
    assert best_model_file(["a.gguf", "mmproj-a.gguf"], None) == "a.gguf"


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory,
              synthetic_model: Callable[..., Path]) -> Path:
    """A Hugging Face cache (HF_HOME) holding the repo owner/tiny-GGUF at one commit: a
    Q4_K_M and a Q8_0 file (one model, two names) and an F16 model split in two shards."""
    pytest.importorskip("huggingface_hub")
    home = tmp_path_factory.mktemp("hf-home")
    folder = home / "hub" / "models--owner--tiny-GGUF"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = folder / "snapshots" / commit
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (snapshot / "big").mkdir(parents=True)
    small = synthetic_model(seed=3)
    for name in ("tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf"):
        shutil.copy(small, snapshot / name)
    tool = build_tool("llama-gguf-split")
    subprocess.run([str(tool), "--split", "--split-max-tensors", "12",
                    str(synthetic_model(seed=4)), str(snapshot / "big" / "tiny-F16")],
                   check=True, capture_output=True)
    return home


@pytest.fixture
def offline_hub(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HOME", str(hub_cache))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_cache / "hub" / "models--owner--tiny-GGUF" / "snapshots"


def test_hf_references_load_from_the_offline_cache(offline_hub: Path) -> None:
    """hf://owner/repo[:TAG] and hf://owner/repo/file.gguf come from the cache when
    HF_HUB_OFFLINE is set; a split pick brings every shard, and loads."""
    snapshot = next(offline_hub.iterdir())
    assert llamakit.resolve_model("hf://owner/tiny-GGUF") == snapshot / "tiny-Q4_K_M.gguf"
    assert llamakit.resolve_model("hf://owner/tiny-GGUF:q8_0") == snapshot / "tiny-Q8_0.gguf"
    first = llamakit.resolve_model("hf://owner/tiny-GGUF:F16")
    assert first == snapshot / "big" / "tiny-F16-00001-of-00002.gguf"
    assert llamakit.resolve_model(
        "hf://owner/tiny-GGUF/big/tiny-F16-00001-of-00002.gguf") == first
    with llamakit.load_model("hf://owner/tiny-GGUF:F16", backend="cpu") as model:
        assert model.path == first and model.info.n_layer == 2


def test_hf_misses_are_model_not_found(offline_hub: Path) -> None:
    """A tag the repo lacks, a repo not cached, a file not cached: ModelNotFoundError saying
    which, never a network call."""
    with pytest.raises(llamakit.ModelNotFoundError, match="no Q2_K GGUF.*tiny-Q8_0.gguf"):
        llamakit.load_model("hf://owner/tiny-GGUF:Q2_K", backend="cpu")
    with pytest.raises(llamakit.ModelNotFoundError, match="HF_HUB_OFFLINE.*other/repo"):
        llamakit.resolve_model("hf://other/repo")
    with pytest.raises(llamakit.ModelNotFoundError, match="owner/tiny-GGUF/absent.gguf"):
        llamakit.resolve_model("hf://owner/tiny-GGUF/absent.gguf")
    with pytest.raises(llamakit.ModelNotFoundError, match="hf://owner/repo"):
        llamakit.resolve_model("hf://just-one-part")


@pytest.fixture
def fake_package(tmp_path: Path, tiny_model_path: Path, host: PluginHost,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An installed distribution ``fake-gguf-models`` whose module declares two models in
    the ``llamakit.models`` entry-point group: a callable and a plain path."""
    site = tmp_path / "site"
    (site / "fake_gguf_models").mkdir(parents=True)
    (site / "fake_gguf_models" / "__init__.py").write_text(
        f"PATH = {str(tiny_model_path)!r}\n"
        "def model_path():\n    return PATH\n"
        "MISSING = '/nonexistent/model.gguf'\n")
    info = site / "fake_gguf_models-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-gguf-models\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[llamakit.models]\ntiny-fake = fake_gguf_models:model_path\n"
        "tiny-path = fake_gguf_models:PATH\nbroken = fake_gguf_models:MISSING\n")
    monkeypatch.syspath_prepend(str(site))
    yield tiny_model_path
    sys.modules.pop("fake_gguf_models", None)


def test_package_models_resolve_by_name(fake_package: Path) -> None:
    """A package's llamakit.models entry points are loadable as pkg://NAME or NAME."""
    assert llamakit.resolve_model("pkg://tiny-fake") == fake_package
    assert llamakit.resolve_model("tiny-path") == fake_package
    with llamakit.load_model("tiny-fake", backend="cpu") as model:
        assert model.path == fake_package
    with pytest.raises(llamakit.ModelNotFoundError, match="declared: broken, tiny-fake"):
        llamakit.resolve_model("pkg://absent")
    with pytest.raises(llamakit.ModelNotFoundError, match="/nonexistent/model.gguf"):
        llamakit.resolve_model("broken")
    assert llamakit.resolve_model("not-declared.gguf") == Path("not-declared.gguf")


def test_cli_takes_hf_references(offline_hub: Path, hub_cache: Path) -> None:
    """A MODEL argument may be an hf:// reference (the config's Path turns // into /)."""
    import os

    env = {**os.environ, "HF_HOME": str(hub_cache), "HF_HUB_OFFLINE": "1",
           "LLAMAKIT_BACKEND": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "llamakit", "info", "hf://owner/tiny-GGUF:F16"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "tiny-F16-00001-of-00002.gguf" in proc.stdout.splitlines()[0]
