"""``Context.chat`` and ``Context.chat_stream``, mixed into ``Context``.

They render the conversation with the resolved template, tokenize it once (no doubled BOS,
special-token text parsed) and hand the token ids to ``generate``/``stream``, whose prompt
evaluation reuses the KV cache for the prefix shared with the previous call. A multi-turn
conversation therefore evaluates only what is new since the last reply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._config.schema import ChatConfig
from .._generation import Generation
from .messages import Messages, normalize_messages
from .render import apply_model_chat_template
from .resolve import TemplateSpec
from .results import ChatResult, ChatStream

if TYPE_CHECKING:
    from .._model import Model

__all__ = ["ChatMixin", "chat_tokens"]


def chat_tokens(model: Model, text: str) -> list[int]:
    """Token ids of a rendered prompt: special-token text parsed, BOS added only when the
    model wants one and the template did not write it (no doubled BOS), no EOS appended."""
    tokens = model.tokenize(text, add_special=False, parse_special=True)
    bos = model.bos_token
    if model.add_bos and bos is not None and (not tokens or tokens[0] != bos):
        tokens.insert(0, bos)
    return tokens


class ChatMixin(Generation):
    """Chat methods of ``Context`` (defined here to keep chat in one package); a chat
    turn is a ``generate``/``stream`` call on the rendered conversation."""

    #: Template and rendering limits for ``chat``; ``from_config`` may set the ``[chat]``
    #: section here.
    chat_config: ChatConfig = ChatConfig()

    def _chat_prompt(self, messages: Messages, template: TemplateSpec | None,
                     tools: Sequence[Mapping[str, Any]] | None,
                     continue_final_message: bool | None,
                     chat_template_kwargs: Mapping[str, Any] | None) -> tuple[str, list[int]]:
        if continue_final_message is None:
            continue_final_message = normalize_messages(messages)[-1]["role"] == "assistant"
        text = apply_model_chat_template(
            self.model, messages, template, add_generation_prompt=not continue_final_message,
            tools=tools, continue_final_message=continue_final_message,
            config=self.chat_config, **dict(chat_template_kwargs or {}))
        return text, chat_tokens(self.model, text)

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
        Generation ends at an end-of-generation token or a stop string (``finish_reason``
        ``"stop"``) or at ``max_new_tokens`` (``"length"``).
        """
        text, tokens = self._chat_prompt(messages, template, tools, continue_final_message,
                                         chat_template_kwargs)
        result = self.generate(tokens, **sampling)
        return ChatResult.from_generation(result, text)

    def chat_stream(self, messages: Messages, *, template: TemplateSpec | None = None,
                    tools: Sequence[Mapping[str, Any]] | None = None,
                    continue_final_message: bool | None = None,
                    chat_template_kwargs: Mapping[str, Any] | None = None,
                    **sampling: Any) -> ChatStream:
        """Like ``chat`` but yields the reply's text pieces; the stream's ``result`` holds
        the ``ChatResult`` once exhausted."""
        text, tokens = self._chat_prompt(messages, template, tools, continue_final_message,
                                         chat_template_kwargs)
        return ChatStream(self.stream(tokens, **sampling), text)
