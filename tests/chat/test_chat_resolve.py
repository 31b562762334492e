"""Which template applies, and the chat-template plugin hook."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import llamakit
from llamakit import ChatTemplate, hookimpl
from llamakit._config.schema import ChatConfig
from llamakit._plugins.manager import PluginHost

USER = [{"role": "user", "content": "Hello"}]
GGUF_TEMPLATE = "gguf:{% for m in messages %}{{ m.content }}{% endfor %}"
VARIANT = "variant:{% for m in messages %}{{ m.content }}{% endfor %}"


def _plugin(*templates: ChatTemplate) -> object:
    class Plugin:
        @hookimpl
        def llamakit_register_chat_templates(self) -> Sequence[ChatTemplate]:
            return templates

    return Plugin()


def _tagged(tag: str, matches: Callable[[Mapping[str, str]], bool] | None = None
            ) -> ChatTemplate:
    return ChatTemplate(name=tag, source=tag + ":{{ messages[0].content }}", matches=matches)


@pytest.fixture(scope="module")
def own_model(synthetic_model: Callable[..., Path]) -> Any:
    path = synthetic_model(chat_template=GGUF_TEMPLATE,
                           metadata={"tokenizer.chat_template.tool_use": VARIANT})
    with llamakit.load_model(path, backend="cpu") as model:
        yield model


def test_model_chat_template_and_named_variants(own_model: llamakit.Model) -> None:
    """Model.chat_template() reads the GGUF's template and its named variants."""
    assert own_model.chat_template() == GGUF_TEMPLATE
    assert own_model.chat_template("tool_use") == VARIANT
    assert own_model.chat_template("missing") is None


def test_resolution_order(own_model: llamakit.Model, plugin_host: PluginHost) -> None:
    """argument > config > plugin override for the model > the GGUF's > llama.cpp's."""
    plugin_host.register(_plugin(_tagged("plugin", lambda meta: True)), name="override-plugin")
    config = ChatConfig(template="config:{{ messages[0].content }}")

    def render(**kwargs: Any) -> str:
        return own_model.apply_chat_template(USER, **kwargs)

    assert render(template="arg:{{ messages[0].content }}", config=config) == "arg:Hello"
    assert render(config=config) == "config:Hello"
    assert render() == "plugin:Hello"
    plugin_host.unregister("override-plugin")
    assert render() == "gguf:Hello"


def test_model_without_template_uses_llama_cpp_default(model: llamakit.Model) -> None:
    """A GGUF without a template gets llama.cpp's default format, ChatML."""
    assert model.chat_template() is None
    assert model.apply_chat_template(USER) == llamakit.apply_chat_template(USER, "chatml")


def test_names_resolve_to_plugin_then_variant_then_builtin(
        own_model: llamakit.Model, plugin_host: PluginHost) -> None:
    """A name finds a plugin's template, the model's named variant, or a llama.cpp format."""
    plugin_host.register(_plugin(_tagged("house")), name="house-plugin")
    assert own_model.apply_chat_template(USER, "house") == "house:Hello"
    assert own_model.apply_chat_template(USER, "tool_use") == "variant:Hello"
    assert own_model.apply_chat_template(USER, "gemma").startswith("<start_of_turn>user\n")
    assert llamakit.apply_chat_template(USER, "house") == "house:Hello"
    with pytest.raises(llamakit.ChatTemplateError, match="tool_use"):
        own_model.apply_chat_template(USER, "nope")


def test_plugin_python_template(plugin_host: PluginHost) -> None:
    """A plugin may register a Python callable as a template."""
    def shout(messages: list[dict[str, Any]], **kwargs: Any) -> str:
        return " ".join(m["content"].upper() for m in messages)

    plugin_host.register(_plugin(ChatTemplate(name="shout", render=shout)), name="py-plugin")
    assert llamakit.apply_chat_template(USER, "shout") == "HELLO"


def test_model_gets_its_bos_and_eos_text(chatml_model: llamakit.Model) -> None:
    """Model.apply_chat_template passes the model's BOS/EOS text (overridable)."""
    source = "{{ bos_token }}|{{ eos_token }}"
    assert chatml_model.apply_chat_template(USER, source) == "<|endoftext|>|<|endoftext|>"
    assert chatml_model.apply_chat_template(USER, source, eos_token="<|im_end|>") == \
        "<|endoftext|>|<|im_end|>"


def test_hook_registers_templates_tagged_with_their_plugin() -> None:
    """llamakit_register_chat_templates: the facade returns each template with its plugin."""
    host = PluginHost(load_entry_points=False)
    host.register(_plugin(_tagged("a"), _tagged("b")), name="two-plugin")
    found = host.chat_templates()
    assert sorted(found) == ["a", "b"]
    assert {t.plugin for t in found.values()} == {"two-plugin"}


def test_duplicate_template_names_name_both_plugins() -> None:
    """Two plugins registering one template name is a PluginError naming both."""
    host = PluginHost(load_entry_points=False)
    host.register(_plugin(_tagged("same")), name="first-plugin")
    host.register(_plugin(_tagged("same")), name="second-plugin")
    with pytest.raises(llamakit.PluginError) as info:
        host.chat_templates()
    assert "first-plugin" in str(info.value) and "second-plugin" in str(info.value)


def test_wrong_hook_return_names_the_plugin() -> None:
    """Returning something other than ChatTemplate is a PluginError naming the plugin."""
    class Bad:
        @hookimpl
        def llamakit_register_chat_templates(self) -> Sequence[object]:
            return ["{{ messages }}"]

    host = PluginHost(load_entry_points=False)
    host.register(Bad(), name="bad-plugin")
    with pytest.raises(llamakit.PluginError, match="bad-plugin"):
        host.chat_templates()


def test_two_overrides_for_one_model_name_both(own_model: llamakit.Model,
                                               plugin_host: PluginHost) -> None:
    """Two plugins claiming the same model is a PluginError naming both."""
    plugin_host.register(_plugin(_tagged("x", lambda meta: True)), name="x-plugin")
    plugin_host.register(_plugin(_tagged("y", lambda meta: True)), name="y-plugin")
    with pytest.raises(llamakit.PluginError) as info:
        own_model.apply_chat_template(USER)
    assert "x-plugin" in str(info.value) and "y-plugin" in str(info.value)


def test_matcher_sees_metadata_and_its_errors_name_the_plugin(
        own_model: llamakit.Model, plugin_host: PluginHost) -> None:
    """matches() receives the GGUF metadata; an exception in it names the plugin."""
    seen: list[Mapping[str, str]] = []
    plugin_host.register(_plugin(_tagged("m", lambda meta: bool(seen.append(meta)))),
                         name="watch-plugin")
    own_model.apply_chat_template(USER)
    assert seen[0]["tokenizer.chat_template"] == GGUF_TEMPLATE
    plugin_host.unregister("watch-plugin")

    def broken(meta: Mapping[str, str]) -> bool:
        raise KeyError("general.name")

    plugin_host.register(_plugin(_tagged("b", broken)), name="broken-plugin")
    with pytest.raises(llamakit.PluginError, match="broken-plugin"):
        own_model.apply_chat_template(USER)


@pytest.mark.parametrize("kwargs", [{"name": "x"}, {"name": "", "source": "{{ 1 }}"},
                                    {"name": "{{ x }}", "source": "{{ 1 }}"},
                                    {"name": "x", "source": "a", "render": print}])
def test_chat_template_validates_itself(kwargs: dict[str, Any]) -> None:
    """A ChatTemplate needs a plain name and exactly one of source or render."""
    with pytest.raises(llamakit.ChatTemplateError):
        ChatTemplate(**kwargs)
