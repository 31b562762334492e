"""``apply_chat_template``: messages to prompt text with the resolved template."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._config.schema import ChatConfig
from .._errors import ChatTemplateError, TemplateLimitError, TemplateSecurityError
from .builtin import native_for, render_builtin
from .messages import Messages, normalize_messages, plain_data
from .resolve import ResolvedTemplate, TemplateSpec, resolve_template

if TYPE_CHECKING:
    from .._model import Model

__all__ = ["apply_chat_template", "apply_model_chat_template", "render_resolved"]

_DEFAULT_CONFIG = ChatConfig()
# transformers' marker for continue_final_message, kept identical so both cut the same text.
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def _tools(tools: Sequence[Mapping[str, Any]] | None) -> list[Any] | None:
    if tools is None:
        return None
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise ChatTemplateError(f"tools must be a list of JSON schemas (dicts), got "
                                f"{type(tools).__name__}")
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise ChatTemplateError(
                f"tool {index} is a {type(tool).__name__}; tools are JSON schemas (dicts) in "
                "OpenAI's shape: {'type': 'function', 'function': {'name': ..., ...}}")
    return list(plain_data(list(tools)))


def _mark_final_message(chat: list[dict[str, Any]], resolved: ResolvedTemplate
                        ) -> tuple[str, list[dict[str, Any]]]:
    """Tag the final message's text (transformers' continue_final_message); returns the
    text to continue."""
    field = "content"
    final = chat[-1].get(field)
    if final is None:
        raise ChatTemplateError('continue_final_message is set but the final message has no '
                                '"content" to continue')
    if resolved.source is not None and field not in resolved.source:
        raise ChatTemplateError(f"continue_final_message is set but {resolved.label} never "
                                "reads a message's content")
    last = dict(chat[-1])
    if isinstance(final, (list, tuple)):
        blocks = [dict(b) if isinstance(b, Mapping) else b for b in final]
        for block in reversed(blocks):
            if isinstance(block, dict) and "text" in block:
                final = block["text"]
                block["text"] = f"{block['text']}{_CONTINUE_TAG}"
                break
        else:
            raise ChatTemplateError("continue_final_message is set but the final message has "
                                    "no text part to continue")
        last[field] = blocks
    elif isinstance(final, str):
        last[field] = final + _CONTINUE_TAG
    else:
        raise ChatTemplateError("continue_final_message needs text content in the final "
                                "message")
    return str(final), [*chat[:-1], last]


def _cut_at_tag(rendered: str, final: str, resolved: ResolvedTemplate) -> str:
    if final.strip() not in rendered or _CONTINUE_TAG.strip() not in rendered:
        raise ChatTemplateError(
            f"continue_final_message is set but {resolved.label} does not keep the final "
            "message's text, so there is nothing to continue")
    at = rendered.rindex(_CONTINUE_TAG.strip())
    if rendered[at:at + len(_CONTINUE_TAG)] == _CONTINUE_TAG:
        return rendered[:at]
    return rendered[:at].rstrip()  # the template trimmed the message's trailing space


def _render_jinja(resolved: ResolvedTemplate, variables: dict[str, Any],
                  config: ChatConfig) -> str:
    from jinja2.exceptions import SecurityError, TemplateSyntaxError

    from .sandbox import (
        LimitExceeded,
        RenderLimits,
        TemplateRaised,
        compile_template,
        render_template,
    )

    assert resolved.source is not None
    label = resolved.label
    limits = RenderLimits(config.max_output_chars, config.max_render_seconds)
    try:
        template = compile_template(resolved.source, limits)
        return render_template(template, variables, limits)
    except LimitExceeded as exc:
        raise TemplateLimitError(f"{label} went past a limit: {exc}", limit=exc.limit) from None
    except SecurityError as exc:
        raise TemplateSecurityError(f"{label} was stopped by the sandbox: {exc}") from None
    except TemplateRaised as exc:
        raise ChatTemplateError(f"{label} refused the conversation: {exc}") from None
    except TemplateSyntaxError as exc:
        raise ChatTemplateError(f"{label} has a Jinja syntax error at line {exc.lineno}: "
                                f"{exc.message}") from None
    except MemoryError:
        raise TemplateLimitError(f"{label} ran out of memory; lower max_output_chars",
                                 limit="max_output_chars") from None
    except RecursionError:
        raise ChatTemplateError(f"{label} recursed too deeply") from None
    except Exception as exc:  # the template is untrusted code: any failure is its failure
        raise ChatTemplateError(f"{label} failed: {type(exc).__name__}: {exc}") from exc


def render_resolved(resolved: ResolvedTemplate, messages: Messages, *,
                    add_generation_prompt: bool, tools: Sequence[Mapping[str, Any]] | None,
                    continue_final_message: bool, special_tokens: Mapping[str, str],
                    template_kwargs: Mapping[str, Any], config: ChatConfig,
                    model: Model | None) -> str:
    """Render ``messages`` with an already resolved template."""
    chat = normalize_messages(messages)
    if continue_final_message and add_generation_prompt:
        raise ChatTemplateError(
            "continue_final_message and add_generation_prompt exclude each other: continue "
            "the final message, or start a new assistant message")
    final = ""
    if continue_final_message:
        final, chat = _mark_final_message(chat, resolved)
    tool_list = _tools(tools)
    extra = dict(template_kwargs)
    documents = extra.pop("documents", None)
    if documents is not None and (not isinstance(documents, Sequence)
                                  or not all(isinstance(d, Mapping) for d in documents)):
        raise ChatTemplateError("documents must be a list of dicts (with 'title' and 'text')")
    variables: dict[str, Any] = {
        "messages": chat, "tools": tool_list, "documents": plain_data(documents),
        "add_generation_prompt": add_generation_prompt,
        **plain_data({**special_tokens, **extra})}
    if resolved.kind == "jinja":
        rendered = _render_jinja(resolved, variables, config)
    elif resolved.kind == "python":
        assert resolved.render is not None
        rendered = resolved.render(variables.pop("messages"), **variables)
        if not isinstance(rendered, str):
            raise ChatTemplateError(f"{resolved.label} returned {type(rendered).__name__}, "
                                    "not str")
    else:
        assert resolved.builtin is not None
        if tool_list is not None:
            raise ChatTemplateError(f"{resolved.label} cannot show tools to the model; use a "
                                    "Jinja template that supports them")
        rendered = render_builtin(native_for(model), resolved.builtin, chat,
                                  add_generation_prompt)
    if len(rendered) > config.max_output_chars:
        raise TemplateLimitError(f"{resolved.label} rendered {len(rendered)} characters, more "
                                 f"than max_output_chars={config.max_output_chars}",
                                 limit="max_output_chars")
    return _cut_at_tag(rendered, final, resolved) if continue_final_message else rendered


def apply_chat_template(messages: Messages, template: TemplateSpec | None = None, *,
                        add_generation_prompt: bool = True,
                        tools: Sequence[Mapping[str, Any]] | None = None,
                        continue_final_message: bool = False, bos_token: str | None = None,
                        eos_token: str | None = None, config: ChatConfig | None = None,
                        **template_kwargs: Any) -> str:
    """Render a conversation into prompt text, as Hugging Face's ``apply_chat_template``.

    ``messages``: dicts in OpenAI's shape (``role``; ``content`` as text, a list of parts or
    None; ``tool_calls``, ...) or objects with ``model_dump()``. ``template``: Jinja source,
    a name (a plugin's template or a llama.cpp built-in such as ``"chatml"``/``"llama3"``),
    a ``ChatTemplate`` or a callable; unset, the ``[chat] template`` of ``config``, else
    ``"chatml"``. ``tools`` are JSON schemas; ``bos_token``/``eos_token`` and every extra
    keyword (``enable_thinking=False``, ``documents=[...]``) reach the template as
    variables. ``continue_final_message`` ends the prompt inside the last message (a
    prefill) instead of after it.

    Jinja runs in a sandbox: a template that reaches for Python internals raises
    ``TemplateSecurityError``; one that passes ``config``'s ``max_output_chars`` or
    ``max_render_seconds`` raises ``TemplateLimitError``; any other failure, including the
    template's own ``raise_exception``, is a ``ChatTemplateError``.
    """
    config = config or _DEFAULT_CONFIG
    resolved = resolve_template(template, model=None, config_template=config.template)
    special = {k: v for k, v in (("bos_token", bos_token), ("eos_token", eos_token))
               if v is not None}
    return render_resolved(resolved, messages, add_generation_prompt=add_generation_prompt,
                           tools=tools, continue_final_message=continue_final_message,
                           special_tokens=special, template_kwargs=template_kwargs,
                           config=config, model=None)


def model_special_tokens(model: Model) -> dict[str, str]:
    """``bos_token``/``eos_token`` as templates expect them: the tokens' text."""
    found = {}
    for name, token in (("bos_token", model.bos_token), ("eos_token", model.eos_token)):
        if token is not None:
            found[name] = model.token_text(token)
    return found


def apply_model_chat_template(model: Model, messages: Messages,
                              template: TemplateSpec | None = None, *,
                              add_generation_prompt: bool = True,
                              tools: Sequence[Mapping[str, Any]] | None = None,
                              continue_final_message: bool = False,
                              config: ChatConfig | None = None,
                              **template_kwargs: Any) -> str:
    """``apply_chat_template`` with the model's template and special tokens filled in."""
    config = config or _DEFAULT_CONFIG
    resolved = resolve_template(template, model=model, config_template=config.template)
    special = model_special_tokens(model)
    for name in ("bos_token", "eos_token"):
        if template_kwargs.get(name) is not None:
            special[name] = template_kwargs.pop(name)
        template_kwargs.pop(name, None)
    return render_resolved(resolved, messages, add_generation_prompt=add_generation_prompt,
                           tools=tools, continue_final_message=continue_final_message,
                           special_tokens=special, template_kwargs=template_kwargs,
                           config=config, model=model)
