"""OpenAI request bodies: parsing, bounds, and the engine keywords they become.

Unknown fields are ignored (as llama-server does); fields llamakit cannot honour (``n`` > 1,
image parts, ``suffix``, ...) are refused with a 400 that says so, never silently dropped.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llamakit import Context
from llamakit._chat.results import ChatResult
from llamakit._config.schema import ServerConfig

from .errors import ApiError

__all__ = ["ChatRequest", "CompletionRequest", "EmbeddingRequest", "RerankRequest",
           "chat_kwargs",
           "completion_kwargs", "parse_body"]

_Finite = Annotated[float, Field(allow_inf_nan=False)]
_TOKEN_KEY = re.compile(r"-?[0-9]{1,12}")


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    """The fields chat and completions share: OpenAI's, then llama.cpp's extras."""

    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    temperature: _Finite | None = Field(default=None, ge=0, le=100)
    top_p: _Finite | None = Field(default=None, ge=0, le=1)
    presence_penalty: _Finite | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: _Finite | None = Field(default=None, ge=-2, le=2)
    n: int = Field(default=1, ge=1, le=128)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    stop: str | list[str] | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100, allow_inf_nan=False)]] \
        | None = None
    user: str | None = None
    # llama.cpp's extra sampling fields (llama-server accepts them on these endpoints).
    top_k: int | None = Field(default=None, ge=0, le=1 << 20)
    min_p: _Finite | None = Field(default=None, ge=0, le=1)
    typical_p: _Finite | None = Field(default=None, ge=0, le=1)
    repeat_penalty: _Finite | None = Field(default=None, ge=0, le=100)
    repeat_last_n: int | None = Field(default=None, ge=-1, le=1 << 20)
    min_keep: int | None = Field(default=None, ge=0, le=1 << 20)
    top_n_sigma: _Finite | None = None
    dynatemp_range: _Finite | None = Field(default=None, ge=0, le=100)
    dynatemp_exponent: _Finite | None = Field(default=None, ge=0, le=100)
    xtc_probability: _Finite | None = Field(default=None, ge=0, le=1)
    xtc_threshold: _Finite | None = Field(default=None, ge=0, le=1)
    dry_multiplier: _Finite | None = Field(default=None, ge=0, le=100)
    dry_base: _Finite | None = Field(default=None, ge=1, le=100)
    dry_allowed_length: int | None = Field(default=None, ge=0, le=1 << 20)
    dry_penalty_last_n: int | None = Field(default=None, ge=-1, le=1 << 20)
    mirostat: Literal[0, 1, 2] | None = None
    mirostat_tau: _Finite | None = Field(default=None, ge=0, le=100)
    mirostat_eta: _Finite | None = Field(default=None, ge=0, le=100)
    grammar: str | None = None
    json_schema: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    # llama-server's: report the distribution the sampler drew from (see logprobs.py)
    post_sampling_probs: bool | None = None
    # llama-server's: sample inside the decode's graph (llama.cpp's --backend-sampling)
    backend_sampling: bool | None = None


_EXTRAS = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "top_k", "min_p",
           "typical_p", "repeat_penalty", "repeat_last_n", "min_keep", "top_n_sigma",
           "dynatemp_range", "dynatemp_exponent", "xtc_probability", "xtc_threshold",
           "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
           "mirostat", "mirostat_tau", "mirostat_eta", "grammar", "json_schema", "seed",
           "backend_sampling")


class TextPart(_Body):
    type: Literal["text"]
    text: str


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int]
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1, le=1)
    logprobs: int | None = Field(default=None, ge=0, le=5)


class EmbeddingRequest(_Body):
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class RerankRequest(_Body):
    """llama-server's ``/v1/rerank`` (Jina's and Cohere's shape)."""

    query: str
    documents: list[str] = Field(min_length=1)
    model: str | None = None
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False


def _no_constant(name: str) -> Any:
    raise ApiError(400, f"{name} is not valid JSON (numbers must be finite)",
                   code="invalid_json")


def parse_body(raw: bytes, model: type[_Body]) -> Any:
    """``raw`` JSON as ``model``; every failure is a 400 naming the field."""
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except ApiError:
        raise
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}", code="invalid_json") \
            from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(400, f"{where or 'body'}: {first['msg']}", param=where or None,
                       code="invalid_value") from None


# -- keywords for the engine ----------------------------------------------------------------
def _accepts(name: str) -> bool:
    """Whether this build's Context.chat/generate takes keyword ``name`` (features that other
    branches add: a newer core turns them on here without a server change)."""
    for method in (Context.chat, Context.generate):
        params = inspect.signature(method).parameters
        if name in params:
            return True
    from llamakit._sampling import SamplingKwargs
    return name in getattr(SamplingKwargs, "__annotations__", {})


def _chat_option(name: str) -> bool:
    """Whether this build's chat layer takes option ``name`` (tool_choice, ...)."""
    try:
        from llamakit._chat.prepare import CHAT_OPTIONS
    except ImportError:
        return _accepts(name)
    return name in CHAT_OPTIONS


def _unsupported(field: str, what: str) -> ApiError:
    return ApiError(400, f"{what} is not supported by this build of llamakit-server",
                    param=field, code="not_supported")


def _max_tokens(requested: int | None, config: ServerConfig, default: int) -> int:
    if requested is None:
        return min(default, config.max_tokens)
    if requested > config.max_tokens:
        raise ApiError(400, f"max_tokens={requested} is more than this server allows "
                       f"({config.max_tokens})", param="max_tokens", code="invalid_value")
    return requested


def _common(body: _Sampling, config: ServerConfig, default_max: int,
            max_tokens: int | None) -> dict[str, Any]:
    if body.n != 1:
        raise _unsupported("n", "n > 1 (several choices per request)")
    kwargs: dict[str, Any] = {"max_new_tokens": _max_tokens(max_tokens, config, default_max)}
    for name in _EXTRAS:
        value = getattr(body, name)
        if value is not None:
            kwargs[name] = value
    if body.stop is not None:
        stops = [body.stop] if isinstance(body.stop, str) else body.stop
        if len(stops) > 16 or any(not s for s in stops):
            raise ApiError(400, "stop: at most 16 non-empty strings", param="stop",
                           code="invalid_value")
        kwargs["stop"] = stops
    if body.logit_bias:
        bias: dict[int, float] = {}
        for key, value in body.logit_bias.items():
            # ASCII digits only: str.isdigit and int() also take '²' and '١'
            if not _TOKEN_KEY.fullmatch(key):
                raise ApiError(400, f"logit_bias keys are token ids, got {key!r}",
                               param="logit_bias", code="invalid_value")
            bias[int(key)] = -math.inf if value <= -100 else value
        kwargs["logit_bias"] = bias
    if body.response_format is not None:
        kind = body.response_format.get("type")
        if kind not in ("text", "json_object", "json_schema"):
            raise ApiError(400, f"response_format.type must be text, json_object or "
                           f"json_schema, got {kind!r}", param="response_format",
                           code="invalid_value")
        if kind != "text":
            kwargs["response_format"] = body.response_format
    return kwargs


def _text(message: Message, index: int) -> str | None:
    content = message.content
    if content is None or isinstance(content, str):
        return content
    parts = []
    for part in content:
        try:
            parts.append(TextPart.model_validate(part).text)
        except ValidationError:
            raise ApiError(400, f"messages.{index}.content: only text parts are supported by "
                           "this build (no images or audio)", param=f"messages.{index}.content",
                           code="not_supported") from None
    return "".join(parts)


def chat_kwargs(body: ChatRequest, config: ServerConfig, default_max: int
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The messages and keywords of ``Engine.chat`` for a chat request."""
    if len(body.messages) > config.max_messages:
        raise ApiError(400, f"{len(body.messages)} messages; this server takes at most "
                       f"{config.max_messages}", param="messages", code="invalid_value")
    messages: list[dict[str, Any]] = []
    chars = 0
    for index, message in enumerate(body.messages):
        item: dict[str, Any] = {"role": message.role, "content": _text(message, index) or ""}
        chars += len(item["content"])
        for extra in ("name", "tool_calls", "tool_call_id"):
            if getattr(message, extra) is not None:
                item[extra] = getattr(message, extra)
        messages.append(item)
    if chars > config.max_prompt_chars:
        raise ApiError(400, f"the messages hold {chars} characters; this server takes at "
                       f"most {config.max_prompt_chars}", param="messages",
                       code="context_length_exceeded")
    kwargs = _common(body, config, default_max, body.max_completion_tokens
                     if body.max_completion_tokens is not None else body.max_tokens)
    if body.tools or body.tool_choice not in (None, "none"):
        if not (_chat_option("tool_choice") and hasattr(ChatResult, "tool_calls")):
            raise _unsupported("tools", "tool calling (tools/tool_choice)")
        if body.tools:
            kwargs["tools"] = body.tools
        if body.tool_choice is not None:
            kwargs["tool_choice"] = body.tool_choice
        if body.parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = body.parallel_tool_calls
    if body.logprobs:
        _logprobs(kwargs, body.top_logprobs or 0, body)
    elif body.top_logprobs is not None:
        raise ApiError(400, "top_logprobs needs logprobs: true", param="top_logprobs",
                       code="invalid_value")
    return messages, kwargs


def _logprobs(kwargs: dict[str, Any], top: int, body: _Sampling) -> None:
    """Ask the engine for ``top`` alternatives per token (the range is checked already)."""
    kwargs["logprobs"] = top
    if body.post_sampling_probs:
        kwargs["post_sampling_probs"] = True


def completion_kwargs(body: CompletionRequest, config: ServerConfig, default_max: int
                      ) -> tuple[str | list[int], dict[str, Any]]:
    """The prompt and keywords of ``Engine.generate`` for a completions request."""
    prompt: str | list[int]
    if isinstance(body.prompt, list) and body.prompt and isinstance(body.prompt[0], str):
        if len(body.prompt) != 1:
            raise _unsupported("prompt", "more than one prompt per request")
        prompt = str(body.prompt[0])
    elif isinstance(body.prompt, list):
        prompt = [int(t) for t in body.prompt]
        if not prompt:
            raise ApiError(400, "prompt is empty", param="prompt", code="empty_prompt")
    else:
        prompt = body.prompt
    if isinstance(prompt, str) and len(prompt) > config.max_prompt_chars:
        raise ApiError(400, f"the prompt holds {len(prompt)} characters; this server takes "
                       f"at most {config.max_prompt_chars}", param="prompt",
                       code="context_length_exceeded")
    if body.suffix:
        raise _unsupported("suffix", "suffix (fill-in-the-middle)")
    kwargs = _common(body, config, default_max, body.max_tokens)
    if body.logprobs is not None:
        _logprobs(kwargs, body.logprobs, body)
    return prompt, kwargs
