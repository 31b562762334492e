"""Synthetic llama-architecture GGUF models: a real tokenizer, random weights.

The tokenizer comes from one of the vocab-only GGUFs that llama.cpp ships in ``models/``
(``ggml-vocab-<name>.gguf``): every ``tokenizer.*`` key is copied byte for byte. The weights
are drawn from ``numpy.random.default_rng(seed)``, so the same arguments always give a
byte-identical file. Such models load in milliseconds and are shape-faithful, which makes
them valid for tests and decode-speed benchmarks, but their text is gibberish.

The file is written directly in GGUF v3 (the layout ``gguf.GGUFWriter`` produces) rather
than through ``GGUFWriter``: tokenizer arrays are copied as raw bytes instead of being
decoded and re-encoded item by item, and each tensor is generated and written in turn, so
memory stays bounded for large shapes.
"""

from __future__ import annotations

import math
import mmap
import os
import secrets
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Literal

import numpy as np
from gguf import GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, GGUFValueType

__all__ = ["MetadataValue", "vocab_path", "write_llama_model"]

#: The types of the extra metadata values ``write_llama_model`` accepts.
MetadataValue = str | int | float | bool

_DEFAULT_NAME = "llamakit synthetic (random weights)"
_WEIGHT_STD = 0.02
_RMS_EPS = 1e-5
_ROPE_FREQ_BASE = 10000.0
# Elements generated per call to the RNG: bounds memory for large tensors. Part of the
# file's definition (changing it changes the bytes written for tensors larger than this).
_CHUNK_ELEMENTS = 1 << 22

# ggml tensor types and llama file types used here (ggml.h / gguf.constants).
_GGML_TYPE_F32 = 0
_GGML_TYPE_F16 = 1
_FILE_TYPE = {"f32": 0, "f16": 1}  # LlamaFileType.ALL_F32, MOSTLY_F16

_SCALAR_FORMATS: dict[int, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}


# --------------------------------------------------------------------------- vocab files


def _available_vocabs(models_dir: Path) -> list[str]:
    prefix, suffix = "ggml-vocab-", ".gguf"
    return sorted(
        p.name[len(prefix) : -len(suffix)]
        for p in models_dir.glob(f"{prefix}*{suffix}")
        if p.is_file()
    )


def vocab_path(name: str) -> Path:
    """Path of llama.cpp's vocab-only GGUF ``models/ggml-vocab-<name>.gguf``.

    The file comes from the llama.cpp tree llamakit builds from
    (``llamakit._build.source.source_tree()``: ``$LLAMAKIT_LLAMA_CPP_DIR`` or the pinned
    tree, materialised on first use). Useful names: ``llama-spm`` (SentencePiece, 32000
    tokens), ``llama-bpe`` (Llama 3 BPE), ``gpt-2``, ``qwen2``, ``phi-3``.

    Raises:
        FileNotFoundError: there is no such vocab; the message lists the available names.
    """
    from .._build.source import source_tree

    models = source_tree().path / "models"
    path = models / f"ggml-vocab-{name}.gguf"
    if not path.is_file():
        available = _available_vocabs(models) if models.is_dir() else []
        listing = ", ".join(available) if available else "none"
        raise FileNotFoundError(
            f"no vocab named {name!r} in {models} (expected {path.name}); available: {listing}"
        )
    return path


@dataclass(frozen=True)
class _RawKV:
    """One metadata key-value pair, its value kept exactly as encoded in the file."""

    key: str
    vtype: int
    payload: bytes  # the encoded value after its type tag (an array includes its header)
    count: int  # number of items of an array, 1 for a scalar

    def encode(self) -> bytes:
        return _encode_string(self.key) + struct.pack("<I", self.vtype) + self.payload


class _Cursor:
    """Little-endian reads over a memory-mapped GGUF file."""

    def __init__(self, buffer: mmap.mmap, path: Path) -> None:
        self.buffer = buffer
        self.path = path
        self.offset = 0

    def _take(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.offset + size > len(self.buffer):
            raise ValueError(f"{self.path} is truncated (at byte {self.offset})")
        (value,) = struct.unpack_from(fmt, self.buffer, self.offset)
        self.offset += size
        return int(value)

    def u32(self) -> int:
        return self._take("<I")

    def u64(self) -> int:
        return self._take("<Q")

    def skip(self, n: int) -> None:
        if self.offset + n > len(self.buffer):
            raise ValueError(f"{self.path} is truncated (at byte {self.offset})")
        self.offset += n

    def string(self) -> str:
        length = self.u64()
        start = self.offset
        self.skip(length)
        return bytes(self.buffer[start : self.offset]).decode("utf-8")

    def skip_value(self, vtype: int) -> int:
        """Skip one value of ``vtype``; return its item count (arrays) or 1."""
        if vtype == GGUFValueType.STRING:
            self.skip(self.u64())
            return 1
        if vtype == GGUFValueType.ARRAY:
            item_type = self.u32()
            count = self.u64()
            if item_type in _SCALAR_FORMATS:
                self.skip(count * struct.calcsize(_SCALAR_FORMATS[item_type]))
            else:
                for _ in range(count):
                    self.skip_value(item_type)
            return count
        fmt = _SCALAR_FORMATS.get(vtype)
        if fmt is None:
            raise ValueError(f"{self.path}: unknown GGUF value type {vtype} at {self.offset}")
        self.skip(struct.calcsize(fmt))
        return 1


def _read_kvs(path: Path) -> tuple[_RawKV, ...]:
    """All metadata key-value pairs of a little-endian GGUF (v2 or v3), in file order."""
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
        cursor = _Cursor(m, path)
        if cursor.u32() != GGUF_MAGIC:
            raise ValueError(f"{path} is not a GGUF file")
        version = cursor.u32()
        if version not in (2, 3):
            raise ValueError(f"{path}: unsupported GGUF version {version} (or big-endian)")
        cursor.u64()  # tensor count
        n_kv = cursor.u64()
        kvs = []
        for _ in range(n_kv):
            key = cursor.string()
            vtype = cursor.u32()
            start = cursor.offset
            count = cursor.skip_value(vtype)
            kvs.append(_RawKV(key, vtype, bytes(m[start : cursor.offset]), count))
    return tuple(kvs)


@lru_cache(maxsize=8)
def _tokenizer_kvs_cached(path: str, size: int, mtime_ns: int) -> tuple[_RawKV, ...]:
    del size, mtime_ns  # only part of the cache key
    return tuple(kv for kv in _read_kvs(Path(path)) if kv.key.startswith("tokenizer."))


def _tokenizer_kvs(path: Path) -> tuple[_RawKV, ...]:
    stat = path.stat()
    return _tokenizer_kvs_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def _resolve_vocab(vocab: str | os.PathLike[str]) -> Path:
    if isinstance(vocab, str) and not (vocab.endswith(".gguf") or os.sep in vocab):
        return vocab_path(vocab)
    path = Path(vocab)
    if not path.is_file():
        raise FileNotFoundError(f"vocab file {path} does not exist")
    return path


# --------------------------------------------------------------------------- encoding


def _encode_string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _scalar(key: str, vtype: int, value: MetadataValue) -> _RawKV:
    if vtype == GGUFValueType.STRING:
        if not isinstance(value, str):
            raise TypeError(f"metadata {key!r} must be a str, got {type(value).__name__}")
        return _RawKV(key, vtype, _encode_string(value), 1)
    fmt = _SCALAR_FORMATS.get(vtype)
    if fmt is None:
        raise TypeError(f"metadata {key!r} has GGUF type {vtype}, which cannot be replaced")
    if isinstance(value, str):
        raise TypeError(f"metadata {key!r} must be a number or bool, got str")
    if vtype == GGUFValueType.BOOL and not isinstance(value, bool):
        raise TypeError(f"metadata {key!r} must be a bool, got {type(value).__name__}")
    if fmt[-1] not in "fd?" and not isinstance(value, int):
        raise TypeError(f"metadata {key!r} must be an int, got {type(value).__name__}")
    try:
        payload = struct.pack(fmt, value)
    except struct.error as exc:
        raise ValueError(f"metadata {key!r}={value!r} does not fit GGUF type {vtype}") from exc
    return _RawKV(key, vtype, payload, 1)


def _infer_type(key: str, value: object) -> int:
    if isinstance(value, bool):
        return GGUFValueType.BOOL
    if isinstance(value, int):
        if 0 <= value < 1 << 32:
            return GGUFValueType.UINT32
        if -(1 << 31) <= value < 0:
            return GGUFValueType.INT32
        if -(1 << 63) <= value < 1 << 63:
            return GGUFValueType.INT64
        if 0 <= value < 1 << 64:
            return GGUFValueType.UINT64
        raise ValueError(f"metadata {key!r}={value} does not fit in 64 bits")
    if isinstance(value, float):
        return GGUFValueType.FLOAT32
    if isinstance(value, str):
        return GGUFValueType.STRING
    raise TypeError(
        f"metadata {key!r} must be a str, int, float or bool, got {type(value).__name__}"
    )


# --------------------------------------------------------------------------- tensors


@dataclass(frozen=True)
class _TensorSpec:
    name: str
    shape: tuple[int, ...]  # numpy order: the last axis is ggml's ne[0]
    ggml_type: int
    ones: bool  # a norm: all ones; else random

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.n_elements * (2 if self.ggml_type == _GGML_TYPE_F16 else 4)

    def encode_info(self, offset: int) -> bytes:
        dims = self.shape[::-1]  # GGUF lists ne[0] first
        return (
            _encode_string(self.name)
            + struct.pack("<I", len(dims))
            + struct.pack(f"<{len(dims)}Q", *dims)
            + struct.pack("<IQ", self.ggml_type, offset)
        )


def _tensor_specs(
    n_vocab: int, n_embd: int, n_layer: int, n_head: int, n_head_kv: int, n_ff: int,
    dtype: Literal["f32", "f16"],
) -> list[_TensorSpec]:
    wtype = _GGML_TYPE_F16 if dtype == "f16" else _GGML_TYPE_F32
    head_dim = n_embd // n_head

    def weight(name: str, rows: int, cols: int) -> _TensorSpec:
        return _TensorSpec(name, (rows, cols), wtype, ones=False)

    def norm(name: str) -> _TensorSpec:
        return _TensorSpec(name, (n_embd,), _GGML_TYPE_F32, ones=True)

    specs = [weight("token_embd.weight", n_vocab, n_embd)]
    for i in range(n_layer):
        blk = f"blk.{i}."
        specs += [
            norm(blk + "attn_norm.weight"),
            weight(blk + "attn_q.weight", n_head * head_dim, n_embd),
            weight(blk + "attn_k.weight", n_head_kv * head_dim, n_embd),
            weight(blk + "attn_v.weight", n_head_kv * head_dim, n_embd),
            weight(blk + "attn_output.weight", n_embd, n_head * head_dim),
            norm(blk + "ffn_norm.weight"),
            weight(blk + "ffn_gate.weight", n_ff, n_embd),
            weight(blk + "ffn_up.weight", n_ff, n_embd),
            weight(blk + "ffn_down.weight", n_embd, n_ff),
        ]
    specs += [norm("output_norm.weight"), weight("output.weight", n_vocab, n_embd)]
    return specs


def _tensor_chunks(spec: _TensorSpec, rng: np.random.Generator,
                   reused: dict[tuple[tuple[int, ...], int], list[bytes]] | None = None,
                   ) -> Iterator[bytes]:
    """The tensor's data in row chunks; random tensors consume ``rng`` in file order.

    With ``reused`` (a cache by shape and type), the first tensor of each shape is drawn
    and kept, and later tensors of that shape repeat its bytes.
    """
    if reused is not None and not spec.ones:
        key = (spec.shape, spec.ggml_type)
        if key not in reused:
            reused[key] = list(_tensor_chunks(spec, rng))
        yield from reused[key]
        return
    if spec.ones:
        yield np.ones(spec.shape, dtype=np.float32).tobytes()
        return
    rows, cols = spec.shape
    step = max(1, _CHUNK_ELEMENTS // cols)
    out_dtype = np.float16 if spec.ggml_type == _GGML_TYPE_F16 else np.float32
    for start in range(0, rows, step):
        n = min(step, rows - start)
        block = rng.standard_normal((n, cols), dtype=np.float32)
        block *= np.float32(_WEIGHT_STD)
        yield block.astype(out_dtype, copy=False).tobytes()


def _pad(n: int, align: int = GGUF_DEFAULT_ALIGNMENT) -> int:
    return (align - n % align) % align


# --------------------------------------------------------------------------- writer


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{key} must be a positive int, got {value!r}")


def write_llama_model(
    path: str | os.PathLike[str],
    *,
    vocab: str | os.PathLike[str] = "llama-spm",
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    n_ctx_train: int = 2048,
    seed: int = 0,
    dtype: Literal["f32", "f16"] = "f32",
    chat_template: str | None = None,
    metadata: Mapping[str, MetadataValue] | None = None,
    name: str = _DEFAULT_NAME,
    reuse_weights: bool = False,
) -> Path:
    """Write a llama-architecture GGUF with random weights and a real tokenizer.

    Args:
        path: where to write; parent folders are created. The file appears atomically
            (written to a temporary file beside it, then renamed over ``path``).
        vocab: the tokenizer: a name for :func:`vocab_path` (``"llama-spm"``,
            ``"llama-bpe"``, ...) or the path of any GGUF (a ``str`` ending in ``.gguf`` or
            containing a path separator, or a path-like). All its ``tokenizer.*`` keys are
            copied unchanged; the vocabulary size is the length of ``tokenizer.ggml.tokens``.
        n_embd: the embedding width; a multiple of ``n_head``.
        n_layer: the number of transformer blocks.
        n_head: attention heads; a multiple of ``n_head_kv``.
        n_head_kv: key/value heads (grouped-query attention when fewer than ``n_head``).
        n_ff: the feed-forward width.
        n_ctx_train: ``llama.context_length``.
        seed: seeds ``numpy.random.default_rng``; weights are N(0, 0.02²), norms are 1.
        dtype: ``"f32"`` or ``"f16"`` for the 2-D weights; norms are always F32.
        chat_template: stored as ``tokenizer.chat_template`` (replacing the vocab's own, if
            it has one). ``None`` keeps whatever the vocab file carries.
        metadata: extra keys. A key the file already has (``general.*``, ``llama.*`` or
            ``tokenizer.*`` scalars) keeps its GGUF type and takes the new value. A new key
            gets: ``bool`` -> BOOL, ``int`` -> UINT32 (INT32 if negative; INT64/UINT64 if it
            does not fit 32 bits), ``float`` -> FLOAT32, ``str`` -> STRING.
        name: ``general.name``.
        reuse_weights: draw one random array per tensor shape and write it for every
            tensor of that shape (every layer, and ``attn_q``/``attn_output`` alike). For
            large benchmark models, whose speed does not depend on the values: writing is
            bound by the disk instead of the random number generator (an 8B-parameter
            shape in about a tenth of the time). The file differs from the default one.

    Returns:
        ``path`` as a :class:`~pathlib.Path`. The same arguments always give the same bytes.
    """
    _check_positive(n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_head_kv=n_head_kv,
                    n_ff=n_ff, n_ctx_train=n_ctx_train)
    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
    if n_head % n_head_kv:
        raise ValueError(f"n_head ({n_head}) must be a multiple of n_head_kv ({n_head_kv})")
    if dtype not in _FILE_TYPE:
        raise ValueError(f"dtype must be 'f32' or 'f16', got {dtype!r}")

    tokenizer = list(_tokenizer_kvs(_resolve_vocab(vocab)))
    tokens = next((kv for kv in tokenizer if kv.key == "tokenizer.ggml.tokens"), None)
    if tokens is None or tokens.vtype != GGUFValueType.ARRAY:
        raise ValueError(f"vocab {vocab!r} has no tokenizer.ggml.tokens array")
    n_vocab = tokens.count
    if chat_template is not None:
        template = _scalar("tokenizer.chat_template", GGUFValueType.STRING, chat_template)
        index = next(
            (i for i, kv in enumerate(tokenizer) if kv.key == template.key), len(tokenizer)
        )
        tokenizer[index : index + 1] = [template]

    u32, f32, string = GGUFValueType.UINT32, GGUFValueType.FLOAT32, GGUFValueType.STRING
    kvs = [
        _scalar("general.architecture", string, "llama"),
        _scalar("general.name", string, name),
        _scalar("general.file_type", u32, _FILE_TYPE[dtype]),
        _scalar("llama.vocab_size", u32, n_vocab),
        _scalar("llama.context_length", u32, n_ctx_train),
        _scalar("llama.embedding_length", u32, n_embd),
        _scalar("llama.block_count", u32, n_layer),
        _scalar("llama.feed_forward_length", u32, n_ff),
        _scalar("llama.attention.head_count", u32, n_head),
        _scalar("llama.attention.head_count_kv", u32, n_head_kv),
        _scalar("llama.rope.dimension_count", u32, n_embd // n_head),
        _scalar("llama.rope.freq_base", f32, _ROPE_FREQ_BASE),
        _scalar("llama.attention.layer_norm_rms_epsilon", f32, _RMS_EPS),
        *tokenizer,
    ]
    index_of = {kv.key: i for i, kv in enumerate(kvs)}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"metadata keys must be non-empty str, got {key!r}")
        if key in index_of:
            kvs[index_of[key]] = _scalar(key, kvs[index_of[key]].vtype, value)
        else:
            index_of[key] = len(kvs)
            kvs.append(_scalar(key, _infer_type(key, value), value))

    specs = _tensor_specs(n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, dtype)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "wb") as out:
            _write_gguf(out, kvs, specs, np.random.default_rng(seed), reuse_weights)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _write_gguf(
    out: IO[bytes], kvs: list[_RawKV], specs: list[_TensorSpec], rng: np.random.Generator,
    reuse_weights: bool = False,
) -> None:
    out.write(struct.pack("<IIQQ", GGUF_MAGIC, GGUF_VERSION, len(specs), len(kvs)))
    for kv in kvs:
        out.write(kv.encode())
    offset = 0
    for spec in specs:
        out.write(spec.encode_info(offset))
        offset += spec.nbytes + _pad(spec.nbytes)
    out.write(b"\0" * _pad(out.tell()))
    reused: dict[tuple[tuple[int, ...], int], list[bytes]] | None = {} if reuse_weights else None
    for spec in specs:
        for chunk in _tensor_chunks(spec, rng, reused):
            out.write(chunk)
        out.write(b"\0" * _pad(spec.nbytes))
