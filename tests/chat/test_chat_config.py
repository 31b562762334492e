"""The [chat] config section: template choice and rendering limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import llamakit
from llamakit._config import config_schema_markdown, load_config
from llamakit._config.schema import ChatConfig


@pytest.fixture(autouse=True)
def _no_llamakit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide any LLAMAKIT_* variables of the surrounding environment."""
    for name in list(os.environ):
        if name.startswith("LLAMAKIT_"):
            monkeypatch.delenv(name)


def test_chat_defaults() -> None:
    """No template is forced; the limits are 4M characters and 5 seconds."""
    chat = load_config().chat
    assert chat == ChatConfig()
    assert (chat.template, chat.max_output_chars, chat.max_render_seconds) == \
        (None, 4_000_000, 5.0)


def test_chat_section_from_toml_and_environment(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """[chat] reads from a TOML file; LLAMAKIT_CHAT__* overrides it."""
    path = tmp_path / "llamakit.toml"
    path.write_text('[chat]\ntemplate = "llama3"\nmax_render_seconds = 2\n', encoding="utf-8")
    monkeypatch.setenv("LLAMAKIT_CHAT__MAX_OUTPUT_CHARS", "1000")
    config = load_config(path)
    assert config.chat.template == "llama3"
    assert config.chat.max_render_seconds == 2.0
    assert config.chat.max_output_chars == 1000
    assert config.origin("chat.max_output_chars") == \
        "environment variable LLAMAKIT_CHAT__MAX_OUTPUT_CHARS"


@pytest.mark.parametrize("section", [{"max_output_chars": 0}, {"max_render_seconds": -1},
                                     {"max_render_seconds": float("inf")}, {"template": ""},
                                     {"tempalte": "chatml"}])
def test_bad_chat_values_are_config_errors(section: dict[str, object]) -> None:
    """Out-of-range limits, an empty template and unknown keys name the chat.* key."""
    with pytest.raises(llamakit.ConfigError, match=r"chat\."):
        load_config(chat=section)


def test_chat_section_is_documented() -> None:
    """The generated reference lists [chat] and its keys."""
    text = config_schema_markdown()
    assert "## `[chat]`" in text
    for key in ("template", "max_output_chars", "max_render_seconds"):
        assert f"LLAMAKIT_CHAT__{key.upper()}" in text


def test_config_template_and_limits_apply() -> None:
    """The section's template is used when none is passed, and its limits hold."""
    config = load_config(chat={"template": "llama3", "max_output_chars": 150}).chat
    messages = [{"role": "user", "content": "Hi"}]
    assert llamakit.apply_chat_template(messages, config=config).startswith(
        "<|start_header_id|>user")
    with pytest.raises(llamakit.TemplateLimitError):
        llamakit.apply_chat_template([{"role": "user", "content": "x" * 100}], config=config)
