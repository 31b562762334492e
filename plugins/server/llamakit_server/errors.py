"""Every error a request can meet, as an HTTP status and OpenAI's error body.

``STATUS`` is the one place that maps llamakit's exception tree to statuses: a request's
bad input (a schema, a template, a prompt too long) is a 4xx, a full queue 429, a closing
engine 503; only a failing backend is a 5xx. tests/server checks that every leaf of
``LlamakitError`` has an entry, so a new leaf cannot fall through to a 500.
"""

from __future__ import annotations

from typing import Any

from llamakit import _errors as E

__all__ = ["STATUS", "ApiError", "error_body", "from_exception"]

#: exception class -> (HTTP status, OpenAI error type, code). Looked up along the MRO, so a
#: subclass without its own entry takes its parent's.
STATUS: dict[type[BaseException], tuple[int, str, str | None]] = {
    E.LlamakitError: (500, "server_error", None),
    E.ConfigError: (400, "invalid_request_error", "invalid_value"),
    E.PluginError: (500, "server_error", "plugin_error"),
    E.BackendError: (500, "server_error", "backend_error"),
    E.BackendUnavailableError: (500, "server_error", "backend_error"),
    E.BuildError: (500, "server_error", "backend_error"),
    E.SourceChecksumError: (500, "server_error", "backend_error"),
    E.ModelLoadError: (500, "server_error", "model_error"),
    E.ModelNotFoundError: (404, "invalid_request_error", "model_not_found"),
    E.GGUFFormatError: (500, "server_error", "model_error"),
    E.ShardError: (500, "server_error", "model_error"),
    E.ClosedError: (503, "server_error", "unavailable"),
    E.EngineClosedError: (503, "server_error", "unavailable"),
    E.TokenizeError: (400, "invalid_request_error", "invalid_prompt"),
    E.InvalidTokenError: (400, "invalid_request_error", "invalid_token"),
    E.SamplerError: (400, "invalid_request_error", "invalid_value"),
    E.GrammarError: (400, "invalid_request_error", "invalid_grammar"),
    E.LoraError: (400, "invalid_request_error", "invalid_value"),
    E.ControlVectorError: (400, "invalid_request_error", "invalid_value"),
    E.StateError: (400, "invalid_request_error", "invalid_value"),
    E.StateFileError: (500, "server_error", "file_error"),
    E.QuantizeError: (400, "invalid_request_error", "invalid_value"),
    E.QuantizeFileError: (500, "server_error", "file_error"),
    E.QueueFullError: (429, "rate_limit_error", "queue_full"),
    E.ChatTemplateError: (400, "invalid_request_error", "invalid_template_input"),
    E.TemplateSecurityError: (400, "invalid_request_error", "template_refused"),
    E.TemplateLimitError: (400, "invalid_request_error", "template_limit"),
    E.ContextError: (500, "server_error", "context_error"),
    E.ContextMemoryError: (503, "server_error", "out_of_memory"),
    E.ContextOverflowError: (400, "invalid_request_error", "context_length_exceeded"),
    E.EmptyPromptError: (400, "invalid_request_error", "empty_prompt"),
    E.ContextBusyError: (503, "server_error", "busy"),
    E.DecodeError: (500, "server_error", "decode_error"),
    E.KVCacheFullError: (503, "server_error", "kv_cache_full"),
    E.AbortedError: (503, "server_error", "aborted"),
    E.InvalidBatchError: (400, "invalid_request_error", "invalid_batch"),
    E.ComputeError: (500, "server_error", "compute_error"),
}


class ApiError(Exception):
    """A request the server refuses: its status, OpenAI error fields, extra headers."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def from_exception(exc: BaseException) -> ApiError:
    """The ``ApiError`` of an exception raised while serving a request."""
    if isinstance(exc, ApiError):
        return exc
    for cls in type(exc).__mro__:
        if cls in STATUS:
            status, kind, code = STATUS[cls]
            headers = {}
            if isinstance(exc, E.QueueFullError):
                retry = getattr(exc, "retry_after", None) or 1
                headers["Retry-After"] = str(max(1, int(round(float(retry)))))
            param = getattr(exc, "key", None)
            return ApiError(status, str(exc), type=kind, code=code,
                            param=param if isinstance(param, str) else None,
                            headers=headers)
    # Builtins raised on bad input by code below llamakit's (a TypeError from a wrong
    # value type, a ValueError from a converter) are the caller's too.
    if isinstance(exc, (TypeError, ValueError, KeyError, IndexError)):
        return ApiError(400, str(exc) or type(exc).__name__, code="invalid_value")
    return ApiError(500, f"internal error ({type(exc).__name__})", type="server_error")
