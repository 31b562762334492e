"""``ModelHandle``: a loaded ``llama_model`` and its vocabulary.

Every input that would make llama.cpp assert or throw (a token id outside the
vocabulary, a path that is not a GGUF file) is checked here before the C call.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np

from .._backend_spec import ModelDevices
from .._config.schema import ModelConfig
from .._errors import (
    InvalidTokenError,
    ModelLoadError,
    ModelNotFoundError,
    TokenizeError,
)
from .._gguf import validate_gguf
from .._limits import check_int32
from .handle import Handle, pinned
from .lib import NativeLib

__all__ = ["LoadProgress", "ModelHandle", "read_string"]

LoadProgress = Callable[[float], None]
"""Called with the share of the model's tensor data loaded so far, 0.0 to 1.0."""

_INT32_MAX = 2**31 - 1
_GGUF_MAGIC = b"GGUF"


def _check_path(path: str, validate: bool = True) -> None:
    if not os.path.exists(path):
        raise ModelNotFoundError(f"model file not found: {path}", path=path)
    if os.path.isdir(path):
        raise ModelLoadError(f"{path} is a directory, not a GGUF model file", path=path)
    if validate:
        # llama.cpp's parser and loader abort the process on some malformed files; the
        # validator rejects those (and names the bad field) before C sees the file.
        validate_gguf(path)
        return
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}", path=path) from exc
    if magic != _GGUF_MAGIC:
        raise ModelLoadError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'); "
            "convert it with llama.cpp's convert_hf_to_gguf.py", path=path)


class _LoadState:
    """What llama.cpp's progress callback of one load sees (through a cffi handle): the
    caller's callback, whether Ctrl-C was pressed, and an exception to raise afterwards.
    Returning False stops the load; llama.cpp then frees what it loaded and returns NULL."""

    def __init__(self, callback: LoadProgress | None) -> None:
        self.callback = callback
        self.interrupted = False
        self.error: BaseException | None = None

    def __call__(self, progress: float) -> bool:
        if self.interrupted or self.error is not None:
            return False
        if self.callback is not None:
            # An exception cannot cross llama.cpp's C frames: keep it for after the call.
            try:
                self.callback(float(progress))
            except BaseException as exc:  # noqa: BLE001 - re-raised by ModelHandle.load
                self.error = exc
                return False
        return True


def _on_progress_error(exc_type: type[BaseException], exc: BaseException | None,
                       tb: Any) -> None:
    """An exception that escaped ``_LoadState`` (Ctrl-C between two of its lines): the load
    stops (the C function returns false), and the load's state re-raises it."""
    state = getattr(_current, "state", None)
    if state is not None and state.error is None:
        state.error = exc if exc is not None else exc_type()


_current = threading.local()  # the _LoadState of the load running on this thread
_bound: weakref.WeakSet[NativeLib] = weakref.WeakSet()  # variants whose callback is bound


def _progress_entry(native: NativeLib) -> Any:
    """The C function ``lk_py_progress`` of ``native``'s module, bound to Python once."""
    if native not in _bound:
        ffi = native.ffi

        @ffi.def_extern(name="lk_py_progress", error=False,  # type: ignore[untyped-decorator]
                        onerror=_on_progress_error)
        def _progress(progress: float, user_data: Any) -> bool:
            state: _LoadState = ffi.from_handle(user_data)
            return state(progress)

        _bound.add(native)
    return native.lib.lk_py_progress


@contextmanager
def _interruptible(state: _LoadState) -> Iterator[None]:
    """While llama.cpp loads, Ctrl-C (on the main thread, when Python's default handler is
    installed) marks the load as interrupted instead of raising inside a C callback, where
    cffi would print and drop the exception; the next progress call then stops the load."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return

    def interrupted(signum: int, frame: object) -> None:
        state.interrupted = True

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def read_string(ffi: Any, call: Callable[[Any, int], int]) -> str | None:
    """Call a llama.cpp ``(buf, size) -> length`` getter, growing the buffer until the
    whole string fits; None when it reports no value."""
    size = 256
    while True:
        buf = ffi.new("char[]", size)
        n = call(buf, size)
        if n < 0:
            return None
        if n < size:
            return bytes(ffi.buffer(buf, n)).decode("utf-8", errors="replace")
        size = n + 1


def _free_then_close(free: Callable[[Any], None], close: Callable[[], None], ptr: Any) -> None:
    free(ptr)
    close()


class ModelHandle(Handle):
    """A loaded ``llama_model`` and its vocabulary."""

    kind = "model"

    def __init__(self, native: NativeLib, ptr: Any, path: str,
                 devices: ModelDevices | None = None) -> None:
        free: Callable[[Any], None] = native.lib.llama_model_free
        if devices is not None:
            free = functools.partial(_free_then_close, free, devices.close)
        super().__init__(native, ptr, free)
        self.path = path
        # The backend's check that the devices it supplied are still there (remote ones
        # may vanish); called after each C call that may reach them. None: nothing to check.
        self.device_check: Callable[[], None] | None = (
            devices.check if devices is not None else None)
        self.vocab = self.lib.llama_model_get_vocab(ptr)
        self.n_vocab = int(self.lib.llama_vocab_n_tokens(self.vocab))

    @classmethod
    def load(cls, native: NativeLib, path: str, settings: ModelConfig, *,
             tensor_split: Sequence[float] | None = None, validate: bool = True,
             progress: LoadProgress | None = None,
             devices: ModelDevices | None = None) -> ModelHandle:
        """Load a model with the (validated) ``[model]`` ``settings``; the offload settings
        and ``tensor_split`` must already be checked against the variant's devices
        (``llamakit._model.check_offload``). ``validate`` runs the GGUF
        validator first (``llamakit._gguf``). ``progress`` is called as the tensor data
        loads; an exception it raises stops the load and is re-raised here. Ctrl-C on the
        main thread stops the load too (``KeyboardInterrupt``). ``devices``, supplied by
        the backend, replace the variant's own devices; the handle closes them with the
        model."""
        _check_path(path, validate)
        check_int32("n_gpu_layers", settings.n_gpu_layers, -1)
        check_int32("main_gpu", settings.main_gpu, 0)
        lib, ffi = native.lib, native.ffi
        params = lib.llama_model_default_params()
        params.n_gpu_layers = settings.n_gpu_layers
        params.main_gpu = settings.main_gpu
        params.split_mode = {"none": lib.LLAMA_SPLIT_MODE_NONE, "layer": lib.LLAMA_SPLIT_MODE_LAYER,
                             "row": lib.LLAMA_SPLIT_MODE_ROW}[settings.split_mode]
        split = None
        if tensor_split is not None:
            # llama.cpp reads llama_max_devices() floats; the array lives until the call ends.
            split = ffi.new("float[]", max(int(lib.llama_max_devices()), len(tensor_split)))
            for i, share in enumerate(tensor_split):
                split[i] = share
            params.tensor_split = split
        device_array = None
        if devices is not None:  # NULL-terminated; it lives until the call ends
            device_array = ffi.new("ggml_backend_dev_t[]", [*devices.devices, ffi.NULL])
            params.devices = device_array
        params.vocab_only = settings.vocab_only
        params.load_mode = {
            (True, True): lib.LLAMA_LOAD_MODE_MMAP_MLOCK, (True, False): lib.LLAMA_LOAD_MODE_MMAP,
            (False, True): lib.LLAMA_LOAD_MODE_MLOCK, (False, False): lib.LLAMA_LOAD_MODE_NONE,
        }[(settings.use_mmap, settings.use_mlock)]
        state = _LoadState(progress)
        state_handle = ffi.new_handle(state)
        params.progress_callback = _progress_entry(native)
        params.progress_callback_user_data = state_handle
        _current.state = state
        try:
            with _interruptible(state):
                ptr = lib.llama_model_load_from_file(os.fsencode(path), params)
        finally:
            _current.state = None
        del split, state_handle, device_array
        if devices is not None:
            try:
                devices.check()  # a device lost during the load is the error to report
            except BaseException:
                if ptr != ffi.NULL:
                    lib.llama_model_free(ptr)
                raise
        if ptr != ffi.NULL and (state.interrupted or state.error is not None):
            # The load got past its last progress call: keep nothing, report what happened.
            lib.llama_model_free(ptr)
            ptr = ffi.NULL
        if state.interrupted:
            raise KeyboardInterrupt
        if state.error is not None:
            raise state.error
        if ptr == ffi.NULL:
            raise ModelLoadError(
                f"llama.cpp could not load {path}; it may be truncated, of an unsupported "
                "architecture or newer format (see the 'llamakit.native' log for details)",
                path=path)
        return cls(native, ptr, path, devices)

    # -- model facts -------------------------------------------------------------------
    @pinned
    def info(self) -> dict[str, Any]:
        lib, ptr = self.lib, self.ptr
        buf = self.ffi.new("char[]", 256)
        lib.llama_model_desc(ptr, buf, 256)
        n_layer = int(lib.llama_model_n_layer(ptr))
        # n_head/n_head_kv abort on a model without layers (vocab-only loads).
        has_layers = n_layer > 0
        ftype = int(lib.llama_model_ftype(ptr))
        if not has_layers:
            # A vocab-only load reads no tensors and reports ALL_F32; the file says better.
            with suppress(ValueError):
                ftype = int(self.metadata().get("general.file_type", ftype))
        return {
            "n_ctx_train": int(lib.llama_model_n_ctx_train(ptr)),
            "n_embd": int(lib.llama_model_n_embd(ptr)),
            "n_vocab": self.n_vocab,
            "n_layer": n_layer,
            "n_head": int(lib.llama_model_n_head(ptr)) if has_layers else 0,
            "n_head_kv": int(lib.llama_model_n_head_kv(ptr)) if has_layers else 0,
            "description": self.ffi.string(buf).decode(errors="replace"),
            "size": int(lib.llama_model_size(ptr)),
            "n_params": int(lib.llama_model_n_params(ptr)),
            "ftype": self.ffi.string(lib.llama_ftype_name(ftype)).decode(errors="replace"),
            "has_encoder": bool(lib.llama_model_has_encoder(ptr)),
            "has_decoder": bool(lib.llama_model_has_decoder(ptr)),
        }

    @pinned
    def metadata(self) -> dict[str, str]:
        lib, ptr = self.lib, self.ptr
        result: dict[str, str] = {}
        for i in range(lib.llama_model_meta_count(ptr)):
            key = read_string(self.ffi,
                              functools.partial(lib.llama_model_meta_key_by_index, ptr, i))
            value = read_string(self.ffi,
                functools.partial(lib.llama_model_meta_val_str_by_index, ptr, i))
            if key is not None and value is not None:
                result[key] = value
        return result

    @pinned
    def chat_template(self, name: str | None) -> str | None:
        raw = self.lib.llama_model_chat_template(
            self.ptr, name.encode() if name is not None else self.ffi.NULL)
        return None if raw == self.ffi.NULL else self.ffi.string(raw).decode("utf-8", "replace")

    # -- vocabulary ---------------------------------------------------------------------
    @pinned
    def special_token(self, which: str) -> int | None:
        self.check_open()  # before C reads the freed vocabulary
        token = int(getattr(self.lib, f"llama_vocab_{which}")(self.vocab))
        return None if token < 0 else token

    @pinned
    def add_bos(self) -> bool:
        self.check_open()  # before C reads the freed vocabulary
        return bool(self.lib.llama_vocab_get_add_bos(self.vocab))

    @pinned
    def add_eos(self) -> bool:
        self.check_open()  # before C reads the freed vocabulary
        return bool(self.lib.llama_vocab_get_add_eos(self.vocab))

    def check_token(self, token: int) -> int:
        if isinstance(token, bool) or not isinstance(token, (int, np.integer)):
            raise TokenizeError(f"token ids are integers, got {token!r}")
        if not 0 <= token < self.n_vocab:
            raise InvalidTokenError(int(token), self.n_vocab)
        return int(token)

    def check_tokens(self, tokens: Iterable[int]) -> list[int]:
        values = list(tokens)
        if not values:
            return values
        try:
            array = np.asarray(values)
        except (TypeError, ValueError) as exc:
            raise TokenizeError(f"token ids must be integers: {exc}") from None
        if array.dtype.kind not in "iu" or array.ndim != 1:
            raise TokenizeError("token ids must be a flat sequence of integers")
        # min/max first: the common all-valid case skips building the mask
        if array.min() < 0 or array.max() >= self.n_vocab:
            bad = np.flatnonzero((array < 0) | (array >= self.n_vocab))
            raise InvalidTokenError(int(array[bad[0]]), self.n_vocab)
        # tolist gives the same Python ints as int() of each value, at C speed (a 512-token
        # prompt's list comprehension was a quarter of generate's own host time)
        result: list[int] = array.tolist()
        return result

    @pinned
    def is_eog(self, token: int) -> bool:
        self.check_open()
        return bool(self.lib.llama_vocab_is_eog(self.vocab, self.check_token(token)))

    @pinned
    def is_control(self, token: int) -> bool:
        self.check_open()
        return bool(self.lib.llama_vocab_is_control(self.vocab, self.check_token(token)))

    @pinned
    def token_attr(self, token: int) -> int:
        self.check_open()
        return int(self.lib.llama_vocab_get_attr(self.vocab, self.check_token(token)))

    @pinned
    def token_text(self, token: int) -> str:
        self.check_open()
        raw = self.lib.llama_vocab_get_text(self.vocab, self.check_token(token))
        return str(self.ffi.string(raw).decode("utf-8", errors="replace"))

    @pinned
    def tokenize(self, text: bytes, add_special: bool, parse_special: bool) -> list[int]:
        self.check_open()
        if len(text) >= _INT32_MAX:
            raise TokenizeError(f"text of {len(text)} bytes is too long to tokenize")
        capacity = len(text) + 8
        while True:
            buf = self.ffi.new("llama_token[]", capacity)
            n = self.lib.llama_tokenize(self.vocab, text, len(text), buf, capacity,
                                        add_special, parse_special)
            if n >= 0:
                return list(self.ffi.unpack(buf, n))
            if n == -(2**31):
                raise TokenizeError("the text produces more tokens than fit in an int32")
            capacity = -n

    @pinned
    def piece(self, token: int, special: bool) -> bytes:
        """``token_to_piece`` for a token already known to be valid."""
        buf = self.ffi.new("char[]", 64)
        n = self.lib.llama_token_to_piece(self.vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = self.ffi.new("char[]", -n)
            n = self.lib.llama_token_to_piece(self.vocab, token, buf, -n, 0, special)
        return bytes(self.ffi.buffer(buf, n))

    @pinned
    def token_to_piece(self, token: int, special: bool) -> bytes:
        self.check_open()
        return self.piece(self.check_token(token), special)

    @pinned
    def detokenize(self, tokens: Sequence[int], remove_special: bool,
                   unparse_special: bool) -> bytes:
        self.check_open()
        values = self.check_tokens(tokens)
        if not values:
            return b""
        array = self.ffi.new("llama_token[]", values)
        capacity = 8 * len(values) + 16
        while True:
            buf = self.ffi.new("char[]", capacity)
            n = self.lib.llama_detokenize(self.vocab, array, len(values), buf, capacity,
                                          remove_special, unparse_special)
            if n >= 0:
                return bytes(self.ffi.buffer(buf, n))
            capacity = -n
