"""``Model``: a loaded GGUF model, its facts, metadata and vocabulary."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._backend_spec import DeviceInfo, ModelDevices
from ._config.fields import check_fields
from ._config.schema import Config, ModelConfig
from ._errors import ConfigError, TokenizeError
from ._native.model import ModelHandle
from ._owned import Owned
from ._progress import progress_bar

if TYPE_CHECKING:
    from ._chat.messages import Messages
    from ._chat.resolve import TemplateSpec
    from ._config.schema import ChatConfig
    from ._context import Context
    from ._lora import LoraAdapter
    from ._native.lib import NativeLib

__all__ = ["LoadOptions", "Model", "ModelInfo", "OffloadInfo", "check_offload", "load_model",
           "open_model"]

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


@dataclass(frozen=True)
class OffloadInfo:
    """Where a model's layers live."""

    backend: str
    devices: tuple[str, ...]
    """Accelerator devices that hold layers (empty when everything is on the CPU)."""
    n_gpu_layers: int
    """What was asked for (-1: all)."""
    n_layers_offloaded: int
    """Layers placed on accelerators, counting the output layer as llama.cpp does."""
    n_layers_total: int
    split_mode: str
    main_gpu: int


Progress = bool | str | Callable[[float], None] | None


@dataclass(frozen=True)
class LoadOptions:
    """Everything one model load needs, validated: what ``load_model``'s keywords and a
    config's ``[model]``/``[backend]``/``[backends.*]``/``[ui]`` tables both become, and
    the one thing passed down to the backend, the handle and the ``Model``."""

    path: str
    settings: ModelConfig
    """The ``[model]`` settings (``n_gpu_layers``, ``split_mode``, ``use_mmap``, ...)."""
    backend: str | None = "auto"
    backend_settings: Mapping[str, Mapping[str, Any]] | None = None
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    validate: bool = True
    progress: Progress = None

    @classmethod
    def from_config(cls, config: Config, *, vocab_only: bool = False,
                    missing: str = "no model to load (model.path is unset): set [model] path "
                                   "in the config file, LLAMAKIT_MODEL, or model={'path': ...}",
                    ) -> LoadOptions:
        """The load ``config`` describes; ``missing`` is the message when it names no model."""
        if config.model.path is None:
            raise ConfigError(missing, path=config.source, key="model.path")
        settings = config.model
        if vocab_only and not settings.vocab_only:
            settings = settings.model_copy(update={"vocab_only": True})
        return cls(os.fspath(config.model.path), settings, backend=config.backend.name,
                   backend_settings=config.backends, progress=config.ui.progress)


def check_offload(accelerators: Sequence[DeviceInfo], max_devices: int,
                  settings: ModelConfig) -> list[float] | None:
    """Check the (schema-valid) offload settings against the variant's devices before
    llama.cpp sees them (it would index past its arrays or assert); returns tensor_split
    as floats."""
    n_devices, main_gpu = len(accelerators), settings.main_gpu
    if main_gpu >= max(1, n_devices):
        raise ConfigError(f"main_gpu={main_gpu} but this backend has {n_devices} "
                          "accelerator device(s) (valid: 0"
                          f"{'..' + str(n_devices - 1) if n_devices > 1 else ''})",
                          key="main_gpu")
    shares = settings.tensor_split
    if shares is None:
        return None
    if not shares or len(shares) > n_devices or len(shares) > max_devices:
        raise ConfigError(f"tensor_split has {len(shares)} entries but this backend has "
                          f"{n_devices} accelerator device(s)", key="tensor_split")
    if sum(shares) <= 0:
        raise ConfigError("tensor_split must not be all zero", key="tensor_split")
    return [float(s) for s in shares]


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


class Model(Owned):
    """A GGUF model loaded by one backend. Use ``load_model()`` to make one.

    Supports ``with``; ``close()`` frees it (and closes its contexts) and may be called
    twice; any use after that raises ``ClosedError``.
    """

    _handle: ModelHandle

    def __init__(self, handle: ModelHandle, *, backend: str, settings: ModelConfig,
                 accelerators: Sequence[DeviceInfo] = (),
                 tensor_split: Sequence[float] | None = None) -> None:
        self._handle = handle
        self.backend = backend
        self.n_gpu_layers = settings.n_gpu_layers
        self.path = Path(handle.path)
        self._accelerators = tuple(accelerators)
        self._split_mode = settings.split_mode
        self._main_gpu = settings.main_gpu
        self._tensor_split = tuple(tensor_split) if tensor_split is not None else None

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Free the model and every context made from it."""
        self._handle.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"backend={self.backend!r}"
        return f"<llamakit.Model {self.path.name!r} {state}>"

    # -- facts ---------------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, str]:
        """Every GGUF key/value pair, values rendered as strings by llama.cpp."""
        self._handle.check_open()
        return dict(self._metadata)

    @cached_property
    def _metadata(self) -> dict[str, str]:
        return self._handle.metadata()

    @property
    def info(self) -> ModelInfo:
        """Shape and size (``n_embd``, ``n_layer``, ``n_ctx_train``, ...)."""
        self._handle.check_open()
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
    def offload(self) -> OffloadInfo:
        """The backend, the accelerator devices used and how many layers they hold."""
        info = self.info
        total = info.n_layer + 1 if info.n_layer > 0 else 0
        devices = self._accelerators
        if self._split_mode == "none":
            devices = devices[self._main_gpu:self._main_gpu + 1]
        elif self._tensor_split is not None:
            devices = tuple(d for d, share in zip(devices, self._tensor_split, strict=False)
                            if share > 0)
        wanted = total if self.n_gpu_layers < 0 else min(self.n_gpu_layers, total)
        offloaded = wanted if devices else 0
        return OffloadInfo(backend=self.backend,
                           devices=tuple(d.name for d in devices) if offloaded else (),
                           n_gpu_layers=self.n_gpu_layers, n_layers_offloaded=offloaded,
                           n_layers_total=total, split_mode=self._split_mode,
                           main_gpu=self._main_gpu)

    @property
    def has_encoder(self) -> bool:
        return bool(self._handle.info()["has_encoder"])

    @property
    def has_decoder(self) -> bool:
        return bool(self._handle.info()["has_decoder"])

    def chat_template(self, name: str | None = None) -> str | None:
        """The GGUF's ``tokenizer.chat_template`` (or ``.<name>``), None when absent."""
        return self._handle.chat_template(name)

    def apply_chat_template(self, messages: Messages, template: TemplateSpec | None = None, *,
                            add_generation_prompt: bool = True,
                            tools: Sequence[Mapping[str, Any]] | None = None,
                            continue_final_message: bool = False,
                            config: ChatConfig | None = None, **template_kwargs: Any) -> str:
        """``llamakit.apply_chat_template`` with this model's template (resolved in the
        order argument > config > plugin > GGUF > llama.cpp's default) and its BOS/EOS text
        as ``bos_token``/``eos_token``."""
        from ._chat.render import apply_model_chat_template

        return apply_model_chat_template(
            self, messages, template, add_generation_prompt=add_generation_prompt, tools=tools,
            continue_final_message=continue_final_message, config=config, **template_kwargs)

    # -- vocabulary ----------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        self._handle.check_open()
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
        self._handle.check_open()
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
    def load_lora(self, path: str | os.PathLike[str]) -> LoraAdapter:
        """Load a LoRA adapter (GGUF, made for this model) to apply to its contexts.

        A file that is not an adapter, or one made for other shapes, raises ``LoraError``.
        """
        from ._lora import load_lora

        return load_lora(self._handle, path)

    def new_context(self, n_ctx: int | None = None, n_batch: int = 512, n_ubatch: int = 512,
                    n_threads: int | None = None, n_threads_batch: int | None = None,
                    embeddings: bool = False, seed: int | None = None,
                    pooling: str | None = None, n_seq_max: int = 1,
                    kv_unified: bool | None = None,
                    deterministic: bool | None = None) -> Context:
        """A new inference context over this model.

        ``n_ctx`` defaults to ``min(n_ctx_train, 4096)``; ``n_threads`` to the CPU count;
        ``pooling`` (``"mean"``, ``"cls"``, ``"last"``, ``"none"``; default: the model's)
        applies to ``embeddings=True`` contexts. ``n_seq_max`` is how many sequences the
        context holds at once (``generate_batch`` slots, packed embeddings); llama.cpp gives
        each sequence ``n_ctx / n_seq_max`` positions, unless ``kv_unified``: then all
        sequences share one KV buffer of ``n_ctx`` positions, which lets a batch mix
        sequences of different lengths in one micro-batch. Default: unified for
        ``embeddings=True`` contexts (as llama.cpp's embedding tool and llama-cpp-python
        do; packed texts of unequal length otherwise split into many small micro-batches),
        separate streams otherwise (llama.cpp's default). ``deterministic``: reuse the
        prompt cache only where the call then gives the tokens of a fresh context (see
        ``docs/sampling.md``); default (None): so for greedy and seeded calls.
        """
        from ._context import Context

        return Context._create(self, n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_ubatch,
                               n_threads=n_threads, n_threads_batch=n_threads_batch,
                               embeddings=embeddings, seed=seed, pooling=pooling,
                               n_seq_max=n_seq_max, kv_unified=kv_unified,
                               deterministic=deterministic)


def load_model(path: str | os.PathLike[str], *, backend: str | None = "auto",
               n_gpu_layers: int = 0, main_gpu: int = 0, split_mode: str = "layer",
               tensor_split: Sequence[float] | None = None, use_mmap: bool = True,
               use_mlock: bool = False, vocab_only: bool = False,
               backend_settings: Mapping[str, Mapping[str, Any]] | None = None,
               validate: bool = True, progress: Progress = None,
               **backend_options: Any) -> Model:
    """Load a GGUF model with the chosen backend (``"auto"``, ``"cpu"``, ``"vulkan"``, ...).

    The ``[model]`` keys are keywords here, checked by the same schema (``ModelConfig``,
    whose defaults these are): ``n_gpu_layers=-1`` offloads every layer; ``main_gpu``,
    ``split_mode`` (``"none"``, ``"layer"``, ``"row"``) and ``tensor_split`` (a share per
    accelerator device) spread them over several devices. ``backend=None`` (or ``"auto"``
    with ``$LLAMAKIT_BACKEND`` set) reads ``$LLAMAKIT_BACKEND``. ``backend_settings`` are
    the ``[backends.<name>]`` config tables (default: those of ``$LLAMAKIT_CONFIG`` and the
    environment). ``validate=False`` skips llamakit's check of the GGUF structure (see
    ``docs/security.md``); keep it on for files you did not make yourself.
    ``progress`` draws a bar on stderr while the weights load (default: the ``[ui]
    progress`` setting, ``"auto"``: when stderr is a terminal; ``"always"``/``True``,
    ``"never"``/``False``); a callable gets the share loaded, 0.0 to 1.0, instead. Ctrl-C
    stops the load (``KeyboardInterrupt``). Further keyword arguments are the chosen
    backend's own options (``rpc_servers=[...]`` of the rpc backend): they override its
    ``[backends.<name>]`` table, and the backend validates both.
    """
    values = check_fields(ModelConfig, {
        "n_gpu_layers": n_gpu_layers, "main_gpu": main_gpu, "split_mode": split_mode,
        "tensor_split": tensor_split, "use_mmap": use_mmap, "use_mlock": use_mlock,
        "vocab_only": vocab_only})
    if not isinstance(validate, bool):
        raise ConfigError(f"validate must be True or False, got {validate!r}", key="validate")
    return open_model(LoadOptions(
        os.fspath(path), ModelConfig.model_construct(**values), backend=backend,
        backend_settings=backend_settings, backend_options=backend_options,
        validate=validate, progress=progress))


def open_model(options: LoadOptions) -> Model:
    """Load the model ``options`` describe: the one path of ``load_model``, ``from_config``
    and the CLI."""
    from ._backends import open_backend

    backend = options.backend
    if backend == "auto" and os.environ.get("LLAMAKIT_BACKEND"):
        backend = None
    native, supplied = open_backend(backend, options.backend_settings,
                                    options.backend_options)
    try:
        accelerators = (list(supplied.accelerators) if supplied is not None
                        else [d for d in native.devices() if d.is_accelerator])
        shares = check_offload(accelerators, native.max_devices(), options.settings)
        return _load(native, options, supplied, accelerators, shares)
    except BaseException:
        if supplied is not None:
            supplied.close()
        raise


def _load(native: NativeLib, options: LoadOptions, supplied: ModelDevices | None,
          accelerators: list[DeviceInfo], shares: list[float] | None) -> Model:
    bar = None
    progress, settings = options.progress, options.settings
    if callable(progress):
        callback: Callable[[float], None] | None = progress
    else:
        bar = None if settings.vocab_only else progress_bar(
            progress, f"loading {Path(options.path).name}", percent=True)
        callback = None if bar is None else (lambda share: bar(share, 1.0))
    try:
        handle = ModelHandle.load(native, options.path, settings, tensor_split=shares,
                                  validate=options.validate, progress=callback,
                                  devices=supplied)
    finally:
        if bar is not None:
            bar.close()
    return Model(handle, backend=native.backend, settings=settings, accelerators=accelerators,
                 tensor_split=shares)
