"""``Context.chat`` and ``Context.chat_stream``, mixed into ``Context``.

They render the conversation with the resolved template, tokenize it once (no doubled BOS,
special-token text parsed) and hand the token ids to ``generate``/``stream``, whose prompt
evaluation reuses the KV cache for the prefix shared with the previous call. A multi-turn
conversation therefore evaluates only what is new since the last reply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from .._config.schema import ChatConfig
from .messages import Messages
from .prepare import PreparedChat, chat_tokens, generation_stops, prepare_chat
from .resolve import TemplateSpec
from .results import ChatResult, ChatStream

if TYPE_CHECKING:
    from .._context import Context

__all__ = ["ChatMixin", "chat_tokens"]


class ChatMixin:
    """Chat methods of ``Context`` (defined here to keep chat in one package)."""

    #: Template and rendering limits for ``chat``; ``from_config`` may set the ``[chat]``
    #: section here.
    chat_config: ChatConfig = ChatConfig()

    def _chat_prompt(self, messages: Messages, template: TemplateSpec | None,
                     tools: Sequence[Mapping[str, Any]] | None,
                     continue_final_message: bool | None,
                     chat_template_kwargs: Mapping[str, Any] | None,
                     sampling: dict[str, Any]) -> tuple[PreparedChat, dict[str, Any]]:
        ctx = cast("Context", self)
        prepared = prepare_chat(ctx.model, messages, template, tools, continue_final_message,
                                chat_template_kwargs, self.chat_config)
        return prepared, generation_stops(prepared, sampling, ctx.stop)

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
        """
        prepared, kwargs = self._chat_prompt(messages, template, tools, continue_final_message,
                                             chat_template_kwargs, sampling)
        result = cast("Context", self).generate(prepared.tokens, **kwargs)
        return ChatResult.from_generation(result, prepared.prompt)

    def chat_stream(self, messages: Messages, *, template: TemplateSpec | None = None,
                    tools: Sequence[Mapping[str, Any]] | None = None,
                    continue_final_message: bool | None = None,
                    chat_template_kwargs: Mapping[str, Any] | None = None,
                    **sampling: Any) -> ChatStream:
        """Like ``chat`` but yields the reply's text pieces; the stream's ``result`` holds
        the ``ChatResult`` once exhausted."""
        prepared, kwargs = self._chat_prompt(messages, template, tools, continue_final_message,
                                             chat_template_kwargs, sampling)
        return ChatStream(cast("Context", self).stream(prepared.tokens, **kwargs),
                          prepared.prompt)
