"""Owning handles over llama.cpp's C objects: model, context, sampler chain.

Each handle frees its C object exactly once: on ``close()``, or through a
``weakref.finalize`` safety net. A context or sampler that depends on a model keeps the
model alive; closing the model closes its dependents first, so C never sees a dangling
model pointer. Every input that would make llama.cpp assert or throw is checked here.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .._errors import (
    ClosedError,
    ContextError,
    InvalidTokenError,
    ModelLoadError,
    ModelNotFoundError,
    SamplerError,
    TokenizeError,
)
from .lib import NativeLib
from .status import raise_for_decode

__all__ = ["ContextHandle", "Handle", "ModelHandle", "SamplerHandle"]

_INT32_MAX = 2**31 - 1
_GGUF_MAGIC = b"GGUF"


class Handle:
    """Owns one C pointer; ``ptr`` raises ``ClosedError`` once closed."""

    kind: ClassVar[str] = "object"

    def __init__(self, native: NativeLib, ptr: Any, free: Callable[[Any], None]) -> None:
        self.native = native
        self.ffi = native.ffi
        self.lib = native.lib
        self._ptr: Any = ptr
        self._dependents: weakref.WeakSet[Handle] = weakref.WeakSet()
        self._finalizer = weakref.finalize(self, free, ptr)

    @property
    def ptr(self) -> Any:
        if self._ptr is None:
            raise ClosedError(f"this {self.kind} is closed")
        return self._ptr

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def add_dependent(self, handle: Handle) -> None:
        self._dependents.add(handle)

    def close(self) -> None:
        if self._ptr is None:
            return
        for dependent in list(self._dependents):
            dependent.close()
        self._ptr = None
        self._finalizer()


def _check_path(path: str) -> None:
    if not os.path.exists(path):
        raise ModelNotFoundError(f"model file not found: {path}", path=path)
    if os.path.isdir(path):
        raise ModelLoadError(f"{path} is a directory, not a GGUF model file", path=path)
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}", path=path) from exc
    if magic != _GGUF_MAGIC:
        raise ModelLoadError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'); "
            "convert it with llama.cpp's convert_hf_to_gguf.py", path=path)


class ModelHandle(Handle):
    """A loaded ``llama_model`` and its vocabulary."""

    kind = "model"

    def __init__(self, native: NativeLib, ptr: Any, path: str) -> None:
        super().__init__(native, ptr, native.lib.llama_model_free)
        self.path = path
        self.vocab = self.lib.llama_model_get_vocab(ptr)
        self.n_vocab = int(self.lib.llama_vocab_n_tokens(self.vocab))

    @classmethod
    def load(cls, native: NativeLib, path: str, *, n_gpu_layers: int, use_mmap: bool,
             use_mlock: bool, vocab_only: bool, main_gpu: int = 0) -> ModelHandle:
        _check_path(path)
        lib, ffi = native.lib, native.ffi
        params = lib.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.main_gpu = main_gpu
        params.vocab_only = vocab_only
        params.load_mode = {
            (True, True): lib.LLAMA_LOAD_MODE_MMAP_MLOCK, (True, False): lib.LLAMA_LOAD_MODE_MMAP,
            (False, True): lib.LLAMA_LOAD_MODE_MLOCK, (False, False): lib.LLAMA_LOAD_MODE_NONE,
        }[(use_mmap, use_mlock)]
        ptr = lib.llama_model_load_from_file(os.fsencode(path), params)
        if ptr == ffi.NULL:
            raise ModelLoadError(
                f"llama.cpp could not load {path}; it may be truncated, of an unsupported "
                "architecture or newer format (see the 'llamakit.native' log for details)",
                path=path)
        return cls(native, ptr, path)

    # -- model facts -------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        lib, ptr = self.lib, self.ptr
        buf = self.ffi.new("char[]", 256)
        lib.llama_model_desc(ptr, buf, 256)
        n_layer = int(lib.llama_model_n_layer(ptr))
        # n_head/n_head_kv abort on a model without layers (vocab-only loads).
        has_layers = n_layer > 0
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
            "ftype": self.ffi.string(
                lib.llama_ftype_name(lib.llama_model_ftype(ptr))).decode(errors="replace"),
            "has_encoder": bool(lib.llama_model_has_encoder(ptr)),
            "has_decoder": bool(lib.llama_model_has_decoder(ptr)),
        }

    def _read_string(self, call: Callable[[Any, int], int]) -> str | None:
        size = 256
        while True:
            buf = self.ffi.new("char[]", size)
            n = call(buf, size)
            if n < 0:
                return None
            if n < size:
                return bytes(self.ffi.buffer(buf, n)).decode("utf-8", errors="replace")
            size = n + 1

    def metadata(self) -> dict[str, str]:
        lib, ptr = self.lib, self.ptr
        result: dict[str, str] = {}
        for i in range(lib.llama_model_meta_count(ptr)):
            key = self._read_string(lambda b, s, i=i: lib.llama_model_meta_key_by_index(ptr, i, b, s))
            value = self._read_string(
                lambda b, s, i=i: lib.llama_model_meta_val_str_by_index(ptr, i, b, s))
            if key is not None and value is not None:
                result[key] = value
        return result

    def chat_template(self, name: str | None) -> str | None:
        raw = self.lib.llama_model_chat_template(
            self.ptr, name.encode() if name is not None else self.ffi.NULL)
        return None if raw == self.ffi.NULL else self.ffi.string(raw).decode("utf-8", "replace")

    # -- vocabulary ---------------------------------------------------------------------
    def special_token(self, which: str) -> int | None:
        token = int(getattr(self.lib, f"llama_vocab_{which}")(self.vocab))
        self.ptr  # noqa: B018 - raises ClosedError after close
        return None if token < 0 else token

    def add_bos(self) -> bool:
        return bool(self.lib.llama_vocab_get_add_bos(self.vocab))

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
        bad = np.flatnonzero((array < 0) | (array >= self.n_vocab))
        if bad.size:
            raise InvalidTokenError(int(array[bad[0]]), self.n_vocab)
        return [int(t) for t in values]

    def is_eog(self, token: int) -> bool:
        self.ptr  # noqa: B018
        return bool(self.lib.llama_vocab_is_eog(self.vocab, self.check_token(token)))

    def is_control(self, token: int) -> bool:
        self.ptr  # noqa: B018
        return bool(self.lib.llama_vocab_is_control(self.vocab, self.check_token(token)))

    def token_attr(self, token: int) -> int:
        self.ptr  # noqa: B018
        return int(self.lib.llama_vocab_get_attr(self.vocab, self.check_token(token)))

    def token_text(self, token: int) -> str:
        self.ptr  # noqa: B018
        raw = self.lib.llama_vocab_get_text(self.vocab, self.check_token(token))
        return self.ffi.string(raw).decode("utf-8", errors="replace")

    def tokenize(self, text: bytes, add_special: bool, parse_special: bool) -> list[int]:
        self.ptr  # noqa: B018
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

    def piece(self, token: int, special: bool) -> bytes:
        """``token_to_piece`` for a token already known to be valid."""
        buf = self.ffi.new("char[]", 64)
        n = self.lib.llama_token_to_piece(self.vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = self.ffi.new("char[]", -n)
            n = self.lib.llama_token_to_piece(self.vocab, token, buf, -n, 0, special)
        return bytes(self.ffi.buffer(buf, n))

    def token_to_piece(self, token: int, special: bool) -> bytes:
        self.ptr  # noqa: B018
        return self.piece(self.check_token(token), special)

    def detokenize(self, tokens: Sequence[int], remove_special: bool,
                   unparse_special: bool) -> bytes:
        self.ptr  # noqa: B018
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


class ContextHandle(Handle):
    """A ``llama_context`` over a model, with its abort flag."""

    kind = "context"

    def __init__(self, model: ModelHandle, *, n_ctx: int, n_batch: int, n_ubatch: int,
                 n_seq_max: int, n_threads: int, n_threads_batch: int, embeddings: bool,
                 pooling_type: int) -> None:
        native, lib, ffi = model.native, model.lib, model.ffi
        params = lib.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_ubatch
        params.n_seq_max = n_seq_max
        params.n_threads = n_threads
        params.n_threads_batch = n_threads_batch
        params.embeddings = embeddings
        params.pooling_type = pooling_type
        params.no_perf = False
        self._abort_flag = ffi.new("int *", 0)
        params.abort_callback = lib.lk_abort_callback
        params.abort_callback_data = self._abort_flag
        ptr = lib.llama_init_from_model(model.ptr, params)
        if ptr == ffi.NULL:
            raise ContextError(
                f"llama.cpp could not create a context with n_ctx={n_ctx}, n_batch={n_batch}; "
                "it may not fit in memory (see the 'llamakit.native' log)")
        super().__init__(native, ptr, lib.llama_free)
        self.model = model
        model.add_dependent(self)
        self.memory = lib.llama_get_memory(ptr)
        self.n_ctx = int(lib.llama_n_ctx(ptr))
        self.n_batch = int(lib.llama_n_batch(ptr))
        self.n_ubatch = int(lib.llama_n_ubatch(ptr))
        self.n_seq_max = int(lib.llama_n_seq_max(ptr))
        self.pooling_type = int(lib.llama_pooling_type(ptr))
        self.embeddings = embeddings

    def set_abort(self, value: bool) -> None:
        self._abort_flag[0] = 1 if value else 0

    def _memory(self) -> Any:
        self.ptr  # noqa: B018 - raises ClosedError after close
        return self.memory

    def clear_memory(self) -> None:
        self.lib.llama_memory_clear(self._memory(), True)

    def remove_from(self, seq_id: int, start: int) -> bool:
        """Drop positions ``start..`` of ``seq_id``; False if the memory cannot do that."""
        return bool(self.lib.llama_memory_seq_rm(self._memory(), seq_id, start, -1))

    def decode(self, tokens: Sequence[int]) -> None:
        """Decode ``tokens`` (valid ids, at most n_batch) after what sequence 0 holds;
        logits are kept for the last one."""
        array = self.ffi.new("llama_token[]", tokens)
        batch = self.lib.llama_batch_get_one(array, len(tokens))
        raise_for_decode(self.lib.llama_decode(self.ptr, batch))

    def evaluate_sequences(self, sequences: Sequence[Sequence[int]], *, encode: bool) -> None:
        """Evaluate each token list as its own sequence (ids 0..), from position 0, with
        an output for every token. The caller checks sizes against n_batch/n_seq_max."""
        lib = self.lib
        total = sum(len(s) for s in sequences)
        batch = lib.llama_batch_init(total, 0, 1)
        try:
            i = 0
            for seq_id, tokens in enumerate(sequences):
                for pos, token in enumerate(tokens):
                    batch.token[i] = token
                    batch.pos[i] = pos
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = seq_id
                    batch.logits[i] = 1
                    i += 1
            batch.n_tokens = total
            call = lib.llama_encode if encode else lib.llama_decode
            raise_for_decode(call(self.ptr, batch), "llama_encode" if encode else "llama_decode")
        finally:
            lib.llama_batch_free(batch)

    def _floats(self, ptr: Any, n: int) -> npt.NDArray[np.float32]:
        return np.frombuffer(self.ffi.buffer(ptr, 4 * n), dtype=np.float32).copy()

    def logits(self, index: int) -> npt.NDArray[np.float32]:
        ptr = self.lib.llama_get_logits_ith(self.ptr, index)
        if ptr == self.ffi.NULL:
            raise ContextError(f"no logits for output {index}")
        return self._floats(ptr, self.model.n_vocab)

    def token_embedding(self, index: int, n_embd: int) -> npt.NDArray[np.float32]:
        ptr = self.lib.llama_get_embeddings_ith(self.ptr, index)
        if ptr == self.ffi.NULL:
            raise ContextError(f"no embedding for output {index}")
        return self._floats(ptr, n_embd)

    def sequence_embedding(self, seq_id: int, n_embd: int) -> npt.NDArray[np.float32] | None:
        ptr = self.lib.llama_get_embeddings_seq(self.ptr, seq_id)
        return None if ptr == self.ffi.NULL else self._floats(ptr, n_embd)

    def set_threads(self, n_threads: int, n_threads_batch: int) -> None:
        self.lib.llama_set_n_threads(self.ptr, n_threads, n_threads_batch)

    def perf(self) -> dict[str, float]:
        data = self.lib.llama_perf_context(self.ptr)
        return {"t_load_ms": data.t_load_ms, "t_p_eval_ms": data.t_p_eval_ms,
                "t_eval_ms": data.t_eval_ms, "n_p_eval": data.n_p_eval,
                "n_eval": data.n_eval, "n_reused": data.n_reused}

    def reset_perf(self) -> None:
        self.lib.llama_perf_context_reset(self.ptr)


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SamplerError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class SamplerHandle(Handle):
    """A ``llama_sampler`` chain."""

    kind = "sampler"

    def __init__(self, native: NativeLib, ptr: Any, model: ModelHandle | None,
                 names: Sequence[str]) -> None:
        super().__init__(native, ptr, native.lib.llama_sampler_free)
        self.names = tuple(names)
        self.model = model
        if model is not None:
            model.add_dependent(self)

    @classmethod
    def chain(cls, native: NativeLib, stages: Sequence[tuple[str, dict[str, Any]]],
              model: ModelHandle | None = None) -> SamplerHandle:
        """Build a chain from ``(stage, params)`` pairs, validated before any C call."""
        lib, ffi = native.lib, native.ffi
        built = [cls._stage(native, name, params, model) for name, params in stages]
        params = lib.llama_sampler_chain_default_params()
        params.no_perf = False
        chain = lib.llama_sampler_chain_init(params)
        for stage in built:
            lib.llama_sampler_chain_add(chain, stage)  # the chain owns it from here on
        del ffi
        return cls(native, chain, model, [name for name, _ in stages])

    @staticmethod
    def _stage(native: NativeLib, name: str, p: dict[str, Any],
               model: ModelHandle | None) -> Any:
        lib, ffi = native.lib, native.ffi
        if name == "greedy":
            ptr = lib.llama_sampler_init_greedy()
        elif name == "dist":
            ptr = lib.llama_sampler_init_dist(p["seed"])
        elif name == "top_k":
            ptr = lib.llama_sampler_init_top_k(p["k"])
        elif name == "top_p":
            ptr = lib.llama_sampler_init_top_p(_finite("top_p", p["p"]), p.get("min_keep", 1))
        elif name == "min_p":
            ptr = lib.llama_sampler_init_min_p(_finite("min_p", p["p"]), p.get("min_keep", 1))
        elif name == "typical":
            ptr = lib.llama_sampler_init_typical(_finite("typical_p", p["p"]),
                                                 p.get("min_keep", 1))
        elif name == "temp":
            ptr = lib.llama_sampler_init_temp(_finite("temperature", p["t"]))
        else:
            raise SamplerError(f"unknown sampler stage {name!r}")
        if ptr == ffi.NULL:
            raise SamplerError(f"llama.cpp could not create the {name!r} sampler")
        del model
        return ptr

    def sample(self, context: ContextHandle, index: int = -1) -> int:
        return int(self.lib.llama_sampler_sample(self.ptr, context.ptr, index))

    def accept(self, token: int) -> None:
        self.lib.llama_sampler_accept(self.ptr, token)

    def reset(self) -> None:
        self.lib.llama_sampler_reset(self.ptr)

    def seed(self) -> int:
        return int(self.lib.llama_sampler_get_seed(self.ptr))
