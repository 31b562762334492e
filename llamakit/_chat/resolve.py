"""Which chat template applies: the resolution order.

1. the ``template`` argument;
2. the ``[chat] template`` config setting;
3. a plugin's template whose ``matches`` accepts this model's metadata;
4. the GGUF's own ``tokenizer.chat_template``;
5. for a model without a template, the built-in format its metadata points to (its chat
   control tokens, architecture, name: ``fallback.guess_builtin``), logged once; ``chatml``
   when nothing matches.

A template given by name (steps 1 and 2) is looked up among the plugins' templates, then the
model's named variants (``tokenizer.chat_template.<name>``, e.g. ``tool_use``), then
llama.cpp's built-in formats. A string with Jinja markup is Jinja source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .._errors import ChatTemplateError, PluginError
from .builtin import native_for
from .template import ChatRenderer, ChatTemplate, is_jinja_source

if TYPE_CHECKING:
    from .._model import Model

__all__ = ["DEFAULT_BUILTIN", "ResolvedTemplate", "TemplateSpec", "resolve_template"]

#: What ``llama_chat_apply_template`` uses when given no template (llama.cpp's guess).
DEFAULT_BUILTIN = "chatml"

#: What a caller may pass as ``template``: a name, Jinja source, a ChatTemplate or a callable.
TemplateSpec = str | ChatTemplate | Callable[..., str]

Kind = Literal["jinja", "python", "builtin"]


@dataclass(frozen=True)
class ResolvedTemplate:
    """The template that will render, and where it came from (for messages)."""

    kind: Kind
    label: str
    source: str | None = None
    render: ChatRenderer | None = None
    builtin: str | None = None


def _from_template(template: ChatTemplate, how: str) -> ResolvedTemplate:
    label = f"chat template {template.name!r} ({template.origin}, {how})"
    if template.source is not None:
        return ResolvedTemplate("jinja", label, source=template.source)
    return ResolvedTemplate("python", label, render=template.render)


def _plugin_templates() -> dict[str, ChatTemplate]:
    from .._plugins.manager import get_plugin_host

    return get_plugin_host().chat_templates()


def _by_name(name: str, model: Model | None, how: str) -> ResolvedTemplate:
    if "\0" in name:  # a C string would end there and name another template
        raise ChatTemplateError(f"chat template name {name!r} contains a NUL character",
                                template=name)
    plugins = _plugin_templates()
    if name in plugins:
        return _from_template(plugins[name], how)
    if model is not None:
        variant = model.chat_template(name)
        if variant is not None:
            return ResolvedTemplate(
                "jinja", f"the model's chat template {name!r} ({how})", source=variant)
    builtins = native_for(model)
    from .._native.chat import chat_builtin_templates

    names = chat_builtin_templates(builtins)
    if name in names:
        return ResolvedTemplate("builtin", f"llama.cpp's built-in chat format {name!r} ({how})",
                                builtin=name)
    variants = sorted(key.removeprefix("tokenizer.chat_template.")
                      for key in (model.metadata if model is not None else {})
                      if key.startswith("tokenizer.chat_template."))
    raise ChatTemplateError(
        f"no chat template named {name!r} ({how}); known: plugins' {sorted(plugins) or 'none'}, "
        f"the model's {variants or 'none'}, llama.cpp's built-ins {list(names)}. Pass Jinja "
        "source to use a template of your own", template=name)


def _from_spec(spec: Any, model: Model | None, how: str) -> ResolvedTemplate:
    if isinstance(spec, ChatTemplate):
        return _from_template(spec, how)
    if isinstance(spec, str):
        if is_jinja_source(spec):
            return ResolvedTemplate("jinja", f"the Jinja chat template {how}", source=spec)
        return _by_name(spec, model, how)
    if callable(spec):
        name = getattr(spec, "__name__", type(spec).__name__)
        return ResolvedTemplate("python", f"chat template {name!r} ({how})", render=spec)
    raise ChatTemplateError(f"a chat template is a name, Jinja source, a ChatTemplate or a "
                            f"callable; got {type(spec).__name__} ({how})")


def _plugin_override(model: Model) -> ResolvedTemplate | None:
    metadata = model.metadata
    chosen: list[ChatTemplate] = []
    for template in _plugin_templates().values():
        if template.matches is None:
            continue
        try:
            matched = template.matches(metadata)
        except Exception as exc:
            raise PluginError(f"plugin {template.plugin!r} raised in matches() of chat template "
                              f"{template.name!r}: {exc}", plugin=template.plugin) from exc
        if matched:
            chosen.append(template)
    if len(chosen) > 1:
        first, second = chosen[0], chosen[1]
        raise PluginError(
            f"chat templates {first.name!r} of plugin {first.plugin!r} and {second.name!r} of "
            f"plugin {second.plugin!r} both claim model {model.path.name!r}; choose one with "
            "template=... or the [chat] template setting, or disable a plugin",
            plugin=second.plugin)
    return _from_template(chosen[0], f"matches {model.path.name!r}") if chosen else None


def resolve_template(template: TemplateSpec | None, *, model: Model | None,
                     config_template: str | None) -> ResolvedTemplate:
    """Apply the resolution order (module docstring) and return the winner."""
    if template is not None:
        return _from_spec(template, model, "given as argument")
    if config_template is not None:
        return _from_spec(config_template, model, "from the [chat] template setting")
    if model is not None:
        override = _plugin_override(model)
        if override is not None:
            return override
        own = model.chat_template()
        if own:  # an empty template is no template (some conversions write one)
            return ResolvedTemplate("jinja", "the model's chat template (GGUF)", source=own)
        return _guessed(model)
    return ResolvedTemplate("builtin", f"llama.cpp's default chat format {DEFAULT_BUILTIN!r} "
                            "(no model or template)", builtin=DEFAULT_BUILTIN)


def _guessed(model: Model) -> ResolvedTemplate:
    """Step 5 for a model: the built-in its metadata points to (``fallback``), else ChatML;
    one warning per model says which and how to choose."""
    from .fallback import guess_builtin, warn_once

    builtin, why = guess_builtin(model)
    chosen = builtin or DEFAULT_BUILTIN
    warn_once(model, (
        f"{model.path.name} has no chat template; using llama.cpp's built-in {chosen!r} "
        f"format because {why}"
        + ("" if builtin else f", so the default {DEFAULT_BUILTIN!r}")
        + ". Choose another with template=... (chat/apply_chat_template), the [chat] "
        "template setting or llamakit chat --chat-template NAME|FILE"))
    return ResolvedTemplate("builtin", f"llama.cpp's built-in chat format {chosen!r} (the "
                            f"model has no chat template; {why})", builtin=chosen)
