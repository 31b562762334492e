"""llama.cpp's built-in chat formatters: a fixed list of named formats rendered in C++."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._native.chat import chat_apply_builtin, chat_builtin_templates
from .messages import text_of

if TYPE_CHECKING:
    from .._model import Model
    from .._native.lib import NativeLib

__all__ = ["builtin_chat_templates", "native_for", "render_builtin"]


def native_for(model: Model | None) -> NativeLib:
    """The native module to format with: the model's, else ``default_native()`` (the
    formatters are the same in every variant of one llama.cpp)."""
    if model is not None:
        return model._handle.native
    from .._backends import default_native

    return default_native()


def builtin_chat_templates() -> list[str]:
    """Names of llama.cpp's built-in chat formats (``"chatml"``, ``"llama3"``, ...).

    They need no Jinja: ``apply_chat_template(messages, "llama3")`` renders with llama.cpp's
    own C++ formatter. Loads the default backend if none is loaded yet.
    """
    return list(chat_builtin_templates(native_for(None)))


def render_builtin(native: NativeLib, name: str, messages: Sequence[dict[str, Any]],
                   add_generation_prompt: bool) -> str:
    """Format normalised messages with the built-in format ``name``; list contents keep
    their text parts joined by newlines, as llama.cpp does."""
    pairs = [(str(m["role"]), text_of(m.get("content"))) for m in messages]
    return chat_apply_builtin(native, name, pairs, add_generation_prompt)
