"""The exception tree of llamakit.

Every error llamakit raises on purpose is a ``LlamakitError``; each leaf also
subclasses the builtin a caller would naturally catch::

    LlamakitError
    ├── ConfigError                 (ValueError)   bad config key, type or file
    ├── PluginError                 (RuntimeError) a plugin misbehaved
    ├── BackendError                (RuntimeError)
    │   ├── BackendUnavailableError                no usable backend of that name
    │   └── BuildError                             building a llama.cpp variant failed
    │       └── SourceChecksumError (ValueError)   the llama.cpp source is not the pinned one
    ├── ModelLoadError              (ValueError)   a model file could not be loaded
    │   ├── ModelNotFoundError      (FileNotFoundError)
    │   ├── GGUFFormatError                        a malformed GGUF file (field, byte offset)
    │   └── ShardError                             a missing or mismatched shard of a split model
    ├── ClosedError                 (ValueError)   use of a closed Model/Context/Sampler
    │   └── EngineClosedError                      the Engine was closed (new or cut request)
    ├── TokenizeError               (ValueError)   text or token ids that cannot be (de)tokenized
    │   └── InvalidTokenError       (IndexError)   a token id outside the vocabulary
    ├── SamplerError                (ValueError)   invalid sampling parameters or a failed sample
    │   └── GrammarError                           a grammar or JSON schema that cannot be used
    ├── LoraError                   (ValueError)   an adapter that does not fit or load
    ├── ControlVectorError          (ValueError)   a control vector that does not fit or load
    ├── StateError                  (ValueError)   a saved state that does not fit or parse
    │   └── StateFileError          (OSError)      a state file could not be read or written
    ├── QuantizeError               (ValueError)   bad quantize() input or a failed quantization
    │   └── QuantizeFileError       (OSError)      the output could not be written there
    ├── QueueFullError              (RuntimeError) the Engine's slots and queue are full
    ├── ChatTemplateError           (ValueError)   a chat template cannot be found or rendered
    │   ├── TemplateSecurityError   (PermissionError) the template reached for Python internals
    │   └── TemplateLimitError                     rendering passed its size or time limit
    └── ContextError                (RuntimeError) creating or using a context failed
        ├── ContextMemoryError      (MemoryError)  the KV cache cannot fit in this machine
        ├── ContextOverflowError    (ValueError)   more tokens than the context holds
        ├── EmptyPromptError        (ValueError)   nothing to generate from
        ├── ContextBusyError                       an unfinished stream holds the context
        └── DecodeError                            llama_decode/encode reported an error
            ├── KVCacheFullError                   no room in the KV cache (status 1)
            ├── AbortedError                       a decode was cancelled (status 2)
            ├── InvalidBatchError   (ValueError)   the batch was rejected (status -1)
            └── ComputeError                       allocation or compute failed (status < -1)

Errors carry what they are about (``path``, ``backend``, ``plugin``, numbers) as
attributes, and their messages say what to do next.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "AbortedError",
    "BackendError",
    "BackendUnavailableError",
    "BuildError",
    "ChatTemplateError",
    "ClosedError",
    "ComputeError",
    "ConfigError",
    "ContextBusyError",
    "ContextError",
    "ContextMemoryError",
    "ContextOverflowError",
    "ControlVectorError",
    "DecodeError",
    "EmptyPromptError",
    "EngineClosedError",
    "GGUFFormatError",
    "GrammarError",
    "InvalidBatchError",
    "InvalidTokenError",
    "KVCacheFullError",
    "LlamakitError",
    "LoraError",
    "ModelLoadError",
    "ModelNotFoundError",
    "PluginError",
    "QuantizeError",
    "QuantizeFileError",
    "QueueFullError",
    "SamplerError",
    "ShardError",
    "SourceChecksumError",
    "StateError",
    "StateFileError",
    "TemplateLimitError",
    "TemplateSecurityError",
    "TokenizeError",
]


class LlamakitError(Exception):
    """Root of every error llamakit raises on purpose."""

    #: The parameter or config key the error is about, when one is (``"top_p"``,
    #: ``"context.n_ctx"``): the server reports it as OpenAI's ``param``.
    key: str | None = None


class ConfigError(LlamakitError, ValueError):
    """A configuration value, key or file is invalid."""

    def __init__(self, message: str, *, path: Path | str | None = None, key: str | None = None):
        self.path = Path(path) if path is not None else None
        self.key = key
        super().__init__(message)


class PluginError(LlamakitError, RuntimeError):
    """A plugin failed to load or registered something invalid."""

    def __init__(self, message: str, *, plugin: str | None = None):
        self.plugin = plugin
        super().__init__(message)


class BackendError(LlamakitError, RuntimeError):
    """Base of the backend errors."""

    def __init__(self, message: str, *, backend: str | None = None):
        self.backend = backend
        super().__init__(message)


class BackendUnavailableError(BackendError):
    """The requested backend is unknown, not installed or cannot run here."""


class BuildError(BackendError):
    """Building a llama.cpp variant or its native module failed."""

    def __init__(
        self, message: str, *, backend: str | None = None, log_path: Path | None = None
    ):
        self.log_path = log_path
        super().__init__(message, backend=backend)


class SourceChecksumError(BuildError, ValueError):
    """The downloaded llama.cpp source does not match the pinned checksum."""


class ModelLoadError(LlamakitError, ValueError):
    """A model file could not be loaded."""

    def __init__(self, message: str, *, path: Path | str | None = None):
        self.path = Path(path) if path is not None else None
        super().__init__(message)


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """The model path does not exist."""


class GGUFFormatError(ModelLoadError):
    """The file is not well-formed GGUF, or holds a value on which llama.cpp would abort.

    Raised by llamakit's validator before llama.cpp opens the file; ``field`` names what
    is wrong (``"n_tensors"``, ``"kv[3] 'general.alignment'"``, ...) and ``offset`` is the
    byte offset of that field in the file. ``reason`` is the message without the location.
    """

    def __init__(self, reason: str, *, path: Path | str | None = None, field: str,
                 offset: int):
        self.reason = reason
        self.field = field
        self.offset = offset
        where = f"{path}: " if path is not None else ""
        super().__init__(f"{where}invalid GGUF file: {field} at byte {offset}: {reason}. The "
                         "file is damaged, truncated or not a llama.cpp model; download or "
                         "convert it again", path=path)


class QuantizeError(LlamakitError, ValueError):
    """``quantize()`` was given something it cannot work with, or llama.cpp failed.

    Input errors are raised before any work starts; ``status`` is llama.cpp's return code
    when its quantizer itself failed.
    """

    def __init__(self, message: str, *, path: Path | str | None = None,
                 status: int | None = None):
        self.path = Path(path) if path is not None else None
        self.status = status
        super().__init__(message)


class ChatTemplateError(LlamakitError, ValueError):
    """A chat template could not be found, or rendering it failed (the template's own
    ``raise_exception``, a syntax error, a message it cannot handle)."""

    def __init__(self, message: str, *, template: str | None = None):
        self.template = template
        super().__init__(message)


class TemplateSecurityError(ChatTemplateError, PermissionError):
    """A template tried to reach Python internals (``__class__``, ``__globals__``, ...) or
    to modify its inputs; the sandbox refused."""


class TemplateLimitError(ChatTemplateError):
    """Rendering passed a limit of the ``[chat]`` config: output size or time.

    ``limit`` names the setting (``"max_output_chars"`` or ``"max_render_seconds"``).
    """

    def __init__(self, message: str, *, limit: str, template: str | None = None):
        self.limit = limit
        super().__init__(message, template=template)


class ClosedError(LlamakitError, ValueError):
    """An object was used after ``close()``."""


class EngineClosedError(ClosedError):
    """The ``Engine`` was closed: a new request is refused, and a request that was queued
    or running when ``close()`` cancelled it ends with this error."""


class QueueFullError(LlamakitError, RuntimeError):
    """The ``Engine``'s slots are busy and its queue holds ``max_queue`` requests already;
    ``retry_after`` is a guess, in seconds, of when to try again."""

    def __init__(self, message: str, *, retry_after: float = 1.0):
        self.retry_after = retry_after
        super().__init__(message)


class TokenizeError(LlamakitError, ValueError):
    """Text or tokens could not be converted."""


class InvalidTokenError(TokenizeError, IndexError):
    """A token id is outside ``[0, n_vocab)``."""

    def __init__(self, token: int, n_vocab: int):
        self.token = token
        self.n_vocab = n_vocab
        super().__init__(
            f"token id {token} is outside the vocabulary (valid ids are 0..{n_vocab - 1})"
        )


class SamplerError(LlamakitError, ValueError):
    """Sampling parameters are invalid, or a sampler chain could not pick a token."""


class GrammarError(SamplerError):
    """A GBNF grammar or JSON schema is invalid, or generation reached a token the grammar
    forbids; the message carries the parser's reason."""


class ContextError(LlamakitError, RuntimeError):
    """A context could not be created or used."""


class ContextMemoryError(ContextError, MemoryError):
    """The context's KV cache cannot fit in this machine's memory (estimated before
    llama.cpp allocates it); ``estimate`` and ``available`` are bytes."""

    def __init__(self, message: str, *, estimate: int, available: int):
        self.estimate = estimate
        self.available = available
        super().__init__(message)


class ContextOverflowError(ContextError, ValueError):
    """More tokens than the context can hold.

    When generation filled the context (``on_overflow="error"``), ``result`` holds what
    was generated up to that point, so nothing is lost.
    """

    def __init__(self, n_tokens: int, n_ctx: int, what: str = "prompt"):
        self.n_tokens = n_tokens
        self.n_ctx = n_ctx
        self.result: Any = None
        super().__init__(
            f"{what} has {n_tokens} tokens but the context holds n_ctx={n_ctx}; "
            "shorten it, create the context with a larger n_ctx, or pass "
            "on_overflow='truncate' or 'shift'"
        )


class EmptyPromptError(ContextError, ValueError):
    """The prompt has no tokens to start from."""


class ContextBusyError(ContextError):
    """A call on a context that an unfinished stream of the same thread holds (finish or
    close that stream first), or the resumption of a stream that was abandoned (its
    thread ended and another thread's call took the context over)."""


class DecodeError(ContextError):
    """llama.cpp reported an error while evaluating a batch."""

    def __init__(self, message: str, *, status: int | None = None):
        self.status = status
        super().__init__(message)


class AbortedError(DecodeError):
    """Evaluation was cancelled through the context's abort flag (``Context.cancel()``)."""


class KVCacheFullError(DecodeError):
    """llama.cpp found no room in the KV cache for the batch (status 1)."""


class InvalidBatchError(DecodeError, ValueError):
    """The batch was rejected as invalid: empty, larger than ``n_batch``, or bad positions
    or sequence ids (status -1, or found by llamakit before the call)."""


class ComputeError(DecodeError):
    """llama.cpp could not allocate memory for the batch or failed computing it
    (status -2, -3 or another negative code)."""


class LoraError(LlamakitError, ValueError):
    """A LoRA adapter could not be loaded or applied (wrong model, not an adapter, ...)."""

    def __init__(self, message: str, *, path: Path | str | None = None):
        self.path = Path(path) if path is not None else None
        super().__init__(message)


class StateError(LlamakitError, ValueError):
    """A saved context state does not belong to this model/context, or is damaged."""

    def __init__(self, message: str, *, path: Path | str | None = None):
        self.path = Path(path) if path is not None else None
        super().__init__(message)


def _as_os_error(error: OSError, cause: OSError | None, path: Path | str | None) -> None:
    """Give a llamakit error that is also an ``OSError`` the system's errno and file name
    (so ``exc.errno == errno.ENOSPC`` works) while its message stays llamakit's."""
    error.errno = cause.errno if cause is not None else None
    error.strerror = cause.strerror if cause is not None else None
    error.filename = str(path) if path is not None else None


class StateFileError(StateError, OSError):
    """A state file could not be written or read: the path is a folder, the file system is
    read-only or full, the folder is gone. ``errno`` is the system's; a file that was
    already there is left as it was."""

    def __init__(self, message: str, *, path: Path | str | None = None,
                 cause: OSError | None = None):
        super().__init__(message, path=path)
        _as_os_error(self, cause, path)

    def __str__(self) -> str:
        return str(self.args[0])


class QuantizeFileError(QuantizeError, OSError):
    """The quantized model could not be written where asked (a pseudo file system such as
    ``/proc``, a read-only or full disk); ``errno`` is the system's."""

    def __init__(self, message: str, *, path: Path | str | None = None,
                 cause: OSError | None = None):
        super().__init__(message, path=path)
        _as_os_error(self, cause, path)

    def __str__(self) -> str:
        return str(self.args[0])


class ShardError(ModelLoadError):
    """A shard of a split model (``name-00002-of-00003.gguf``) is missing, is not the shard
    its name says, or belongs to another model; ``path`` names that shard."""


class ControlVectorError(LlamakitError, ValueError):
    """A control vector could not be read, or does not fit the model (width, layers)."""

    def __init__(self, message: str, *, path: Path | str | None = None):
        self.path = Path(path) if path is not None else None
        super().__init__(message)
