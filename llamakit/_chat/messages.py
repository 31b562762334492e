"""Messages as a template sees them, normalised the way Hugging Face's renderer does.

Messages may be dicts in OpenAI's shape (``content`` a string, a list of parts, or None),
dataclasses or pydantic models (the OpenAI SDK's message objects). What reaches a template
is rebuilt from plain JSON types only: keys whose value is None are dropped (templates
render a missing key well and a None badly), anything else becomes a ``"<TypeName>"``
placeholder, and a message's reasoning is copied under ``reasoning_content`` and
``thinking`` (the two names templates read). This follows
``transformers.utils.chat_template_utils`` so that both render the same text; it also keeps
rich objects, whose methods the sandbox knows nothing about, out of the template.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._errors import ChatTemplateError

__all__ = ["Messages", "normalize_messages", "plain_data", "text_of"]

#: What the chat functions accept as a conversation: mappings, or objects with
#: ``model_dump()`` (pydantic) or dataclasses.
Messages = Sequence[Any]

# Names a message's reasoning arrives under; templates read the first, gpt-oss "thinking".
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


#: How deeply messages, tools and documents may nest. JSON from a chat API nests a few
#: levels (a tool's schema a dozen); Python's recursion limit would be reached near 1000
#: and a structure that contains itself never ends.
MAX_NESTING = 100


class _Path:
    """The containers being walked, to bound depth and find a structure inside itself."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def enter(self, value: Any) -> None:
        if id(value) in self.ids:
            raise ChatTemplateError(
                f"a {type(value).__name__} in the messages or tools contains itself; "
                "templates get JSON data, which cannot refer to itself")
        if len(self.ids) >= MAX_NESTING:
            raise ChatTemplateError(
                f"messages or tools nest deeper than {MAX_NESTING} levels (llamakit's "
                "limit on chat data)")
        self.ids.append(id(value))

    def leave(self) -> None:
        self.ids.pop()


def _dump(value: Any) -> Any:
    try:
        return value.model_dump()
    except (RecursionError, ValueError) as exc:  # pydantic's "circular reference"
        raise ChatTemplateError(f"cannot turn a {type(value).__name__} into data for the "
                                f"template: {exc}") from None


def _objects_to_dicts(value: Any, path: _Path | None = None) -> Any:
    path = path or _Path()
    if isinstance(value, (str, bytes, int, float)) or value is None:
        return value
    path.enter(value)
    try:
        if isinstance(value, Mapping):
            return {key: _objects_to_dicts(item, path) for key, item in value.items()}
        if isinstance(value, list):
            return [_objects_to_dicts(item, path) for item in value]
        if isinstance(value, tuple):
            return tuple(_objects_to_dicts(item, path) for item in value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: _objects_to_dicts(getattr(value, f.name), path)
                    for f in dataclasses.fields(value)}
        if callable(getattr(value, "model_dump", None)):
            return _objects_to_dicts(_dump(value), path)
        return value
    finally:
        path.leave()


def plain_data(value: Any, path: _Path | None = None) -> Any:
    """``value`` rebuilt from JSON types; other objects become ``"<TypeName>"``. Nesting
    deeper than ``MAX_NESTING`` or a container inside itself is a ChatTemplateError."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    path = path or _Path()
    path.enter(value)
    try:
        return _plain_container(value, path)
    finally:
        path.leave()


def _plain_container(value: Any, path: _Path) -> Any:
    if isinstance(value, str):  # subclasses (enums, ...) carry methods of their own
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {plain_data(key, path): plain_data(item, path) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_data(item, path) for item in value]
    if isinstance(value, tuple):
        return tuple(plain_data(item, path) for item in value)
    if isinstance(value, np.generic):  # np.bool_(False) must not become a truthy string
        return plain_data(value.item(), path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain_data(getattr(value, f.name), path)
                for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return plain_data(_dump(value), path)
    return f"<{type(value).__name__}>"


def _alias_reasoning(message: dict[str, Any]) -> dict[str, Any]:
    reasoning = next((message[key] for key in _REASONING_FIELDS
                      if message.get(key) is not None), None)
    if reasoning is None:
        return message
    return {"thinking": reasoning, **message, "reasoning_content": reasoning}


def normalize_messages(messages: Messages) -> list[dict[str, Any]]:
    """Plain-dict copies of ``messages`` ready for a template (the caller's are untouched)."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise ChatTemplateError(
            f"messages must be a list of messages, got {type(messages).__name__}; e.g. "
            "[{'role': 'user', 'content': 'Hello'}]")
    if not messages:
        raise ChatTemplateError("the conversation is empty; give at least one message")
    result = []
    for index, raw in enumerate(getattr(messages, "messages", messages)):
        message = _objects_to_dicts(raw)
        if not isinstance(message, dict):
            raise ChatTemplateError(
                f"message {index} is a {type(raw).__name__}, not a mapping with 'role' and "
                "'content' (or an object with model_dump())")
        message = {key: value for key, value in message.items() if value is not None}
        if not isinstance(message.get("role"), str):
            raise ChatTemplateError(f"message {index} has no 'role' string: {message!r}")
        result.append(_alias_reasoning(plain_data(message)))
    return result


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or its text parts joined by newlines
    (what llama.cpp does for its built-in formats; other parts are left out)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        texts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                texts.append(part)
        return "\n".join(texts)
    return str(content)
