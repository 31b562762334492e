"""from_config: a model and context from a TOML file, with [sampling] as defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

import llamakit


def test_from_config_builds_model_and_context(tmp_path: Path, tiny_model_path: Path) -> None:
    """The TOML's model, context and sampling sections all take effect."""
    config = tmp_path / "llamakit.toml"
    config.write_text(f"""
[backend]
name = "cpu"
[model]
path = "{tiny_model_path}"
[context]
n_ctx = 512
n_batch = 32
[sampling]
temperature = 0.0
max_new_tokens = 7
""")
    model, ctx = llamakit.from_config(config)
    with model:
        assert ctx.n_ctx == 512 and ctx.n_batch == 32
        result = ctx.generate("Hello")
        assert len(result.tokens) == 7
        assert result.tokens == ctx.generate("Hello", temperature=0).tokens
    assert ctx.closed


def test_from_config_without_model_path_raises(tmp_path: Path) -> None:
    """A config with no model path is a ConfigError naming model.path."""
    config = tmp_path / "llamakit.toml"
    config.write_text("[backend]\nname = 'cpu'\n")
    with pytest.raises(llamakit.ConfigError, match="model.path"):
        llamakit.from_config(config)


def test_from_config_typo_names_key_and_file(tmp_path: Path) -> None:
    """A misspelt key fails before anything loads, naming the key and the file."""
    config = tmp_path / "bad.toml"
    config.write_text("[context]\nn_ctxx = 5\n")
    with pytest.raises(llamakit.ConfigError) as info:
        llamakit.from_config(config)
    assert "context.n_ctxx" in str(info.value) and str(config) in str(info.value)


def test_environment_selects_backend(monkeypatch: pytest.MonkeyPatch,
                                     tiny_model_path: Path) -> None:
    """LLAMAKIT_BACKEND picks the backend when the call leaves it at auto."""
    monkeypatch.setenv("LLAMAKIT_BACKEND", "nosuch")
    with pytest.raises(llamakit.BackendUnavailableError, match="nosuch"):
        llamakit.load_model(tiny_model_path)
    monkeypatch.setenv("LLAMAKIT_BACKEND", "cpu")
    with llamakit.load_model(tiny_model_path) as model:
        assert model.backend == "cpu"
