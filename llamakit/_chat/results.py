"""What ``Context.chat`` returns: an OpenAI-shaped assistant message with its usage."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from .._results import GenerationResult, TextStream

__all__ = ["ChatFinishReason", "ChatResult", "ChatStream", "ChatUsage"]

#: OpenAI's reasons: "stop" (an end-of-generation token or a stop string), "length",
#: "tool_calls" (the reply calls tools).
ChatFinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True)
class ChatUsage:
    """Token counts as OpenAI reports them; ``completion_tokens`` are the reply's tokens
    (the end-of-generation token is not part of the reply)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True)
class ChatResult:
    """The assistant's reply: ``role``, ``content``, ``finish_reason`` and ``usage`` as in
    OpenAI's chat completion; ``generation`` keeps the details (tokens, timings with
    ``prompt_tokens_cached``, seed) and ``prompt`` the rendered prompt text.
    ``tool_calls`` (OpenAI's shape: ``id``, ``type``, ``function`` with ``name`` and
    ``arguments`` as JSON text) and ``reasoning_content`` come from llama.cpp's chat parser
    when tools or reasoning are in play."""

    content: str
    finish_reason: ChatFinishReason
    usage: ChatUsage
    generation: GenerationResult
    prompt: str
    role: str = "assistant"
    tool_calls: tuple[dict[str, Any], ...] = ()
    reasoning_content: str | None = None

    @classmethod
    def from_generation(cls, result: GenerationResult, prompt: str) -> ChatResult:
        n_prompt, n_reply = len(result.prompt_tokens), len(result.tokens)
        return cls(content=result.text,
                   finish_reason="length" if result.finish_reason == "length" else "stop",
                   usage=ChatUsage(n_prompt, n_reply, n_prompt + n_reply),
                   generation=result, prompt=prompt)

    @property
    def message(self) -> dict[str, Any]:
        """``{"role": "assistant", "content": ...}`` (with ``tool_calls`` and
        ``reasoning_content`` when there are), to append to the conversation."""
        message: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [dict(call) for call in self.tool_calls]
        if self.reasoning_content:
            message["reasoning_content"] = self.reasoning_content
        return message

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI-shaped fields as plain data (JSON-ready)."""
        extra: dict[str, Any] = {}
        if self.tool_calls:
            extra["tool_calls"] = [dict(call) for call in self.tool_calls]
        if self.reasoning_content is not None:
            extra["reasoning_content"] = self.reasoning_content
        return {"role": self.role, "content": self.content, **extra,
                "finish_reason": self.finish_reason,
                "usage": {"prompt_tokens": self.usage.prompt_tokens,
                          "completion_tokens": self.usage.completion_tokens,
                          "total_tokens": self.usage.total_tokens}}


class ChatStream(Iterator[str]):
    """Text pieces of the reply as they are generated; ``result`` (a ``ChatResult``) is
    set once the stream is exhausted."""

    def __init__(self, stream: TextStream, prompt: str) -> None:
        self._stream = stream
        self.prompt = prompt
        self.result: ChatResult | None = None

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> str:
        try:
            return next(self._stream)
        except StopIteration:
            if self.result is None and self._stream.result is not None:
                self.result = ChatResult.from_generation(self._stream.result, self.prompt)
            raise

    def close(self) -> None:
        """Stop generating early (what leaving a ``for`` loop does too)."""
        self._stream.close()
