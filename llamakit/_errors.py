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
    │   └── ModelNotFoundError      (FileNotFoundError)
    ├── ClosedError                 (ValueError)   use of a closed Model/Context/Sampler
    ├── TokenizeError               (ValueError)   text or token ids that cannot be (de)tokenized
    │   └── InvalidTokenError       (IndexError)   a token id outside the vocabulary
    ├── SamplerError                (ValueError)   invalid sampling parameters
    └── ContextError                (RuntimeError) creating or using a context failed
        ├── ContextOverflowError    (ValueError)   more tokens than the context holds
        ├── EmptyPromptError        (ValueError)   nothing to generate from
        ├── DecodeError                            llama_decode/encode reported an error
        └── AbortedError                           a decode was cancelled

Errors carry what they are about (``path``, ``backend``, ``plugin``, numbers) as
attributes, and their messages say what to do next.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AbortedError",
    "BackendError",
    "BackendUnavailableError",
    "BuildError",
    "ClosedError",
    "ConfigError",
    "ContextError",
    "ContextOverflowError",
    "DecodeError",
    "EmptyPromptError",
    "InvalidTokenError",
    "LlamakitError",
    "ModelLoadError",
    "ModelNotFoundError",
    "PluginError",
    "SamplerError",
    "SourceChecksumError",
    "TokenizeError",
]


class LlamakitError(Exception):
    """Root of every error llamakit raises on purpose."""


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


class ClosedError(LlamakitError, ValueError):
    """An object was used after ``close()``."""


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
    """Sampling parameters are invalid."""


class ContextError(LlamakitError, RuntimeError):
    """A context could not be created or used."""


class ContextOverflowError(ContextError, ValueError):
    """More tokens than the context can hold."""

    def __init__(self, n_tokens: int, n_ctx: int, what: str = "prompt"):
        self.n_tokens = n_tokens
        self.n_ctx = n_ctx
        super().__init__(
            f"{what} has {n_tokens} tokens but the context holds n_ctx={n_ctx}; "
            "shorten it or create the context with a larger n_ctx"
        )


class EmptyPromptError(ContextError, ValueError):
    """The prompt has no tokens to start from."""


class DecodeError(ContextError):
    """llama.cpp reported an error while evaluating a batch."""

    def __init__(self, message: str, *, status: int | None = None):
        self.status = status
        super().__init__(message)


class AbortedError(DecodeError):
    """Evaluation was cancelled through the context's abort flag."""
