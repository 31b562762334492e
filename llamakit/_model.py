"""``Model``: a loaded GGUF model, its facts, metadata and vocabulary."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError, TokenizeError
from ._native.model import ModelHandle

if TYPE_CHECKING:
    from ._context import Context

__all__ = ["Model", "ModelInfo", "load_model"]

_TOKEN_ATTR_CONTROL = 1 << 3


@dataclass(frozen=True)
class ModelInfo:
    """Shape and size of a model, as llama.cpp reports them."""

    architecture: str
    description: str
    n_ctx_train: int
    n_embd: int
    n_vocab: int
    n_layer: int
    n_head: int
    n_head_kv: int
    size: int
    """Bytes of tensor data."""
    n_params: int
    ftype: str


def _as_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}", key=name)
    return value


def _as_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}", key=name)
    return value


def _as_text(text: str | bytes) -> bytes:
    if isinstance(text, str):
        return text.encode("utf-8", errors="surrogatepass")
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text)
    raise TokenizeError(f"text must be str or bytes, got {type(text).__name__}")


class Model:
    """A GGUF model loaded by one backend. Use ``load_model()`` to make one.

    Supports ``with``; ``close()`` frees it (and closes its contexts) and may be called
    twice; any use after that raises ``ClosedError``.
    """

    def __init__(self, handle: ModelHandle, *, backend: str, n_gpu_layers: int) -> None:
        self._handle = handle
        self.backend = backend
        self.n_gpu_layers = n_gpu_layers
        self.path = Path(handle.path)

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Free the model and every context made from it."""
        self._handle.close()

    @property
    def closed(self) -> bool:
        return self._handle.closed

    def __enter__(self) -> Model:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"backend={self.backend!r}"
        return f"<llamakit.Model {self.path.name!r} {state}>"

    # -- facts ---------------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, str]:
        """Every GGUF key/value pair, values rendered as strings by llama.cpp."""
        self._handle.ptr  # noqa: B018 - ClosedError after close
        return dict(self._metadata)

    @cached_property
    def _metadata(self) -> dict[str, str]:
        return self._handle.metadata()

    @property
    def info(self) -> ModelInfo:
        """Shape and size (``n_embd``, ``n_layer``, ``n_ctx_train``, ...)."""
        self._handle.ptr  # noqa: B018
        return self._info

    @cached_property
    def _info(self) -> ModelInfo:
        raw = self._handle.info()
        return ModelInfo(
            architecture=self._metadata.get("general.architecture", ""),
            description=raw["description"], n_ctx_train=raw["n_ctx_train"],
            n_embd=raw["n_embd"], n_vocab=raw["n_vocab"], n_layer=raw["n_layer"],
            n_head=raw["n_head"], n_head_kv=raw["n_head_kv"], size=raw["size"],
            n_params=raw["n_params"], ftype=raw["ftype"])

    @property
    def has_encoder(self) -> bool:
        return bool(self._handle.info()["has_encoder"])

    @property
    def has_decoder(self) -> bool:
        return bool(self._handle.info()["has_decoder"])

    def chat_template(self, name: str | None = None) -> str | None:
        """The GGUF's ``tokenizer.chat_template`` (or ``.<name>``), None when absent."""
        return self._handle.chat_template(name)

    # -- vocabulary ----------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        self._handle.ptr  # noqa: B018 - ClosedError after close
        return self._handle.n_vocab

    @property
    def bos_token(self) -> int | None:
        return self._handle.special_token("bos")

    @property
    def eos_token(self) -> int | None:
        return self._handle.special_token("eos")

    @property
    def eot_token(self) -> int | None:
        return self._handle.special_token("eot")

    @property
    def sep_token(self) -> int | None:
        return self._handle.special_token("sep")

    @property
    def pad_token(self) -> int | None:
        return self._handle.special_token("pad")

    @property
    def nl_token(self) -> int | None:
        return self._handle.special_token("nl")

    @property
    def add_bos(self) -> bool:
        """Whether tokenizing with ``add_special=True`` prepends BOS."""
        return self._handle.add_bos()

    def is_eog(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, EOT, ...)."""
        return self._handle.is_eog(token)

    def is_control(self, token: int) -> bool:
        return self._handle.is_control(token)

    @property
    def special_tokens(self) -> list[int]:
        """Ids of the control tokens (BOS, EOS, chat markers, ...)."""
        self._handle.ptr  # noqa: B018
        return list(self._special_tokens)

    @cached_property
    def _special_tokens(self) -> list[int]:
        handle = self._handle
        return [t for t in range(handle.n_vocab) if handle.token_attr(t) & _TOKEN_ATTR_CONTROL]

    def token_text(self, token: int) -> str:
        """The vocabulary entry of ``token`` as stored in the GGUF."""
        return self._handle.token_text(token)

    def token_to_bytes(self, token: int, special: bool = False) -> bytes:
        """The bytes ``token`` stands for (a byte-fallback token may be a partial character)."""
        return self._handle.token_to_piece(token, special)

    def token_to_piece(self, token: int, special: bool = False) -> str:
        """The text of one token; invalid UTF-8 of a partial character becomes U+FFFD."""
        return self.token_to_bytes(token, special).decode("utf-8", errors="replace")

    def tokenize(self, text: str | bytes, add_special: bool = True,
                 parse_special: bool = False) -> list[int]:
        """Token ids of ``text``; ``add_special`` adds BOS/EOS as the model wants,
        ``parse_special`` turns special-token text such as ``<|im_start|>`` into its id."""
        return self._handle.tokenize(_as_text(text), _as_bool("add_special", add_special),
                                     _as_bool("parse_special", parse_special))

    def detokenize(self, tokens: list[int] | tuple[int, ...], remove_special: bool = False,
                   unparse_special: bool = False) -> str:
        """Text of ``tokens``; ``unparse_special`` renders control tokens as their text."""
        raw = self._handle.detokenize(tokens, _as_bool("remove_special", remove_special),
                                      _as_bool("unparse_special", unparse_special))
        return raw.decode("utf-8", errors="replace")

    # -- contexts ------------------------------------------------------------------------
    def new_context(self, n_ctx: int | None = None, n_batch: int = 512, n_ubatch: int = 512,
                    n_threads: int | None = None, n_threads_batch: int | None = None,
                    embeddings: bool = False, seed: int | None = None,
                    pooling: str | None = None) -> Context:
        """A new inference context over this model.

        ``n_ctx`` defaults to ``min(n_ctx_train, 4096)``; ``n_threads`` to the CPU count;
        ``pooling`` (``"mean"``, ``"cls"``, ``"last"``, ``"none"``; default: the model's)
        applies to ``embeddings=True`` contexts.
        """
        from ._context import Context

        return Context._create(self, n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_ubatch,
                               n_threads=n_threads, n_threads_batch=n_threads_batch,
                               embeddings=embeddings, seed=seed, pooling=pooling)


def load_model(path: str | os.PathLike[str], *, backend: str | None = "auto",
               n_gpu_layers: int = 0, use_mmap: bool = True, use_mlock: bool = False,
               vocab_only: bool = False) -> Model:
    """Load a GGUF model with the chosen backend (``"auto"``, ``"cpu"``, ...).

    ``n_gpu_layers=-1`` offloads every layer. ``backend=None`` reads ``$LLAMAKIT_BACKEND``.
    """
    from ._backends import resolve_backend

    _as_int("n_gpu_layers", n_gpu_layers, -1)
    for name, flag in (("use_mmap", use_mmap), ("use_mlock", use_mlock),
                       ("vocab_only", vocab_only)):
        _as_bool(name, flag)
    if backend == "auto" and os.environ.get("LLAMAKIT_BACKEND"):
        backend = None
    native = resolve_backend(backend)
    handle = ModelHandle.load(native, os.fspath(path), n_gpu_layers=n_gpu_layers,
                              use_mmap=use_mmap, use_mlock=use_mlock, vocab_only=vocab_only)
    return Model(handle, backend=native.backend, n_gpu_layers=n_gpu_layers)
