"""``Context.chat`` and ``Context.chat_stream``, mixed into ``Context``.

They render the conversation with the resolved template, tokenize it once (no doubled BOS,
special-token text parsed) and hand the token ids to ``generate``/``stream``, whose prompt
evaluation reuses the KV cache for the prefix shared with the previous call. A multi-turn
conversation therefore evaluates only what is new since the last reply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._config.fields import check_field
from .._config.schema import ChatConfig
from .._errors import ChatTemplateError
from .._generation import Generation
from .messages import Messages
from .prepare import (
    CHAT_OPTIONS,
    PreparedChat,
    chat_result,
    chat_tokens,
    generation_stops,
    prepare_chat,
)
from .resolve import TemplateSpec
from .results import ChatResult, ChatStream

__all__ = ["ChatMixin", "chat_tokens"]


class ChatMixin(Generation):
    """Chat methods of ``Context`` (defined here to keep chat in one package); a chat
    turn is a ``generate``/``stream`` call on the rendered conversation."""

    #: Template and rendering limits for ``chat``; ``from_config`` may set the ``[chat]``
    #: section here.
    chat_config: ChatConfig = ChatConfig()

    def _chat_prompt(self, messages: Messages, template: TemplateSpec | None,
                     tools: Sequence[Mapping[str, Any]] | None,
                     continue_final_message: bool | None,
                     chat_template_kwargs: Mapping[str, Any] | None,
                     sampling: dict[str, Any]) -> tuple[PreparedChat, dict[str, Any]]:
        options = {name: sampling.pop(name) for name in CHAT_OPTIONS if name in sampling}
        for name in ("reasoning_format", "reasoning_budget"):  # their [chat] defaults
            value = options.get(name, getattr(self.chat_config, name))
            if value is not None:
                options[name] = check_field(ChatConfig, name, value, error=ChatTemplateError)
        prepared = prepare_chat(self.model, messages, template, tools, continue_final_message,
                                chat_template_kwargs, self.chat_config, options, sampling)
        return prepared, generation_stops(prepared, sampling, self.stop)

    def chat(self, messages: Messages, *, template: TemplateSpec | None = None,
             tools: Sequence[Mapping[str, Any]] | None = None,
             continue_final_message: bool | None = None,
             chat_template_kwargs: Mapping[str, Any] | None = None,
             **sampling: Any) -> ChatResult:
        """Reply to a conversation (messages in OpenAI's shape) as the assistant.

        The model's chat template renders the conversation (``template`` overrides it; see
        ``apply_chat_template``); ``chat_template_kwargs`` (e.g. ``{"enable_thinking":
        False}``) reach the template. When the last message is the assistant's, the reply
        continues it (``continue_final_message``, default: only then). ``sampling`` are
        ``generate``'s keywords (``max_new_tokens``, ``temperature``, ``stop``, ...).
        Generation ends at an end-of-generation token, the template's own end-of-turn
        markers (even where the vocabulary does not flag them) or a stop string
        (``finish_reason`` ``"stop"``), or at ``max_new_tokens`` (``"length"``).

        ``tools`` (OpenAI's function schemas) with the keywords ``tool_choice``
        (``"auto"``, ``"none"``, ``"required"`` or ``{"type": "function", "function":
        {"name": ...}}``) and ``parallel_tool_calls``: llama.cpp's chat layer renders the
        prompt, constrains a required call with its grammar and parses the output; the
        result's ``tool_calls`` are OpenAI-shaped and ``finish_reason`` is ``"tool_calls"``.
        Tool results go back as ``{"role": "tool", "tool_call_id": ..., "content": ...}``.
        Reasoning templates (``<think>`` and family forms) put the thinking in
        ``reasoning_content``: ``reasoning_format`` ``"auto"`` (their default),
        ``"deepseek"`` or ``"none"`` (keep it in ``content``); ``reasoning_budget=0`` turns
        thinking off where the template can.
        """
        prepared, kwargs = self._chat_prompt(messages, template, tools, continue_final_message,
                                             chat_template_kwargs, sampling)
        return chat_result(prepared, self.generate(prepared.tokens, **kwargs))

    def chat_stream(self, messages: Messages, *, template: TemplateSpec | None = None,
                    tools: Sequence[Mapping[str, Any]] | None = None,
                    continue_final_message: bool | None = None,
                    chat_template_kwargs: Mapping[str, Any] | None = None,
                    **sampling: Any) -> ChatStream:
        """Like ``chat`` but yields the reply's text pieces; the stream's ``result`` holds
        the ``ChatResult`` once exhausted. With tools or reasoning the stream is a
        ``ParsedChatStream``: its ``deltas()`` also give reasoning and tool-call pieces."""
        prepared, kwargs = self._chat_prompt(messages, template, tools, continue_final_message,
                                             chat_template_kwargs, sampling)
        stream = self.stream(prepared.tokens, **kwargs)
        if prepared.plan is not None:
            from .tools import ParsedChatStream

            return ParsedChatStream(stream, prepared.prompt, prepared.plan)
        return ChatStream(stream, prepared.prompt)
