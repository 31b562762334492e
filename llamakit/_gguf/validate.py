"""Checking a GGUF file's structure before llama.cpp opens it.

The walk follows ``gguf_init_from_file_impl`` (ggml/src/gguf.cpp) of the pinned tree and
applies each of its limits, then the checks of ``llama_model_loader`` that guard reads of
tensor data (every tensor inside the file), then :mod:`.hazards`: values on which
llama.cpp asserts (aborts the process) instead of failing. Only the header is read; tensor
data is never touched, so the cost depends on the size of the metadata (mostly the
tokenizer's arrays), not on the size of the model.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .._errors import ModelLoadError, ModelNotFoundError
from .ggml_types import GGML_MAX_DIMS, GGML_MAX_NAME, GGML_TYPE_COUNT, GGML_TYPES
from .reader import GGUF_MAX_ARRAY_ELEMENTS, Cursor

__all__ = ["GGUFSummary", "KeyValue", "Parsed", "TensorInfo", "parse", "validate_gguf"]

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
GGUF_DEFAULT_ALIGNMENT = 32
STRING, ARRAY = 8, 9
TYPE_NAMES = ("u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "array", "u64",
              "i64", "f64")
_SCALARS: dict[int, tuple[int, Callable[[bytes, int], tuple[int | float | bool]]]] = {
    t: (struct.calcsize(fmt), struct.Struct(fmt).unpack_from)
    for t, fmt in ((0, "<B"), (1, "<b"), (2, "<H"), (3, "<h"), (4, "<I"), (5, "<i"),
                   (6, "<f"), (7, "<?"), (10, "<Q"), (11, "<q"), (12, "<d"))}
_INT64_MAX = 2**63 - 1
_SIZE_MAX = 2**64 - 1
# The smallest possible key/value pair (1-byte key, 1-byte value) and tensor info (empty
# name, no dimensions): what a count is checked against before anything is allocated.
_MIN_KV_BYTES = 8 + 1 + 4 + 1
_MIN_TENSOR_BYTES = 8 + 4 + 4 + 8
_HEADER_BYTES = 4 + 4 + 8 + 8
# ggml's TENSOR_ALIGNMENT: a memory-mapped buffer must start on it
# (ggml_backend_cpu_buffer_from_ptr asserts), so with general.alignment below it every
# tensor's absolute file offset is checked.
_TENSOR_ALIGNMENT = 32
# No model has keys this long; gguf.cpp would read (and allocate) one up to 1 GiB.
_MAX_KEY_BYTES = 1 << 20
_TOKENS_KEY = b"tokenizer.ggml.tokens"


@dataclass(frozen=True)
class KeyValue:
    """One metadata pair as found in the file."""

    index: int
    key: str
    type: int
    """GGUF type of the value (``9``, array, for arrays)."""
    item_type: int
    """Type of an array's items; the same as ``type`` for a scalar."""
    count: int
    """Items of an array; 1 for a scalar."""
    offset: int
    """Byte offset of the value (of an array's first item)."""
    value: int | float | bool | bytes | None
    """A scalar's value, a string's bytes (None when longer than 4 KiB), None for arrays."""

    @property
    def field(self) -> str:
        return f"kv[{self.index}] {self.key!r}"


@dataclass(frozen=True)
class TensorInfo:
    """One tensor info: ``shape`` in ggml order, ``offset`` relative to the data section."""

    index: int
    name: str
    shape: tuple[int, ...]
    type: int
    offset: int
    nbytes: int
    at: int
    """Byte offset of the tensor info in the file."""


@dataclass
class Parsed:
    """Everything the structural walk found; input to the hazard checks."""

    path: str
    size: int
    version: int = 0
    kvs: dict[bytes, KeyValue] = field(default_factory=dict)
    """By key as C sees it (up to the first NUL): the first pair wins, as in gguf_find_key."""
    n_kv: int = 0
    tensors: list[TensorInfo] = field(default_factory=list)
    alignment: int = GGUF_DEFAULT_ALIGNMENT
    data_offset: int = 0
    data_size: int = 0
    tokens: list[bytes] | None = None
    """The items of ``tokenizer.ggml.tokens`` when it is an array of strings."""

    def string(self, key: str) -> str | None:
        kv = self.kvs.get(key.encode())
        if kv is None or kv.type != STRING or not isinstance(kv.value, bytes):
            return None
        return kv.value.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class GGUFSummary:
    """What ``validate_gguf`` learned about a file that passed."""

    path: Path
    version: int
    n_kv: int
    n_tensors: int
    alignment: int
    data_offset: int
    """Byte offset of the tensor data section."""
    data_size: int
    """Bytes of tensor data, each tensor padded to ``alignment``."""
    file_size: int
    architecture: str | None
    """``general.architecture``, when it is a string."""
    shards: tuple[Path, ...] = ()
    """The other files of a split model, each checked the same way."""


def _type_name(gguf_type: int) -> str:
    return TYPE_NAMES[gguf_type] if 0 <= gguf_type < len(TYPE_NAMES) else str(gguf_type)


def _read_header(cur: Cursor, parsed: Parsed) -> tuple[int, int]:
    if cur.size < 4:
        cur.fail("magic", 0, f"the file has {cur.size} bytes; a GGUF file starts with "
                             f"{_HEADER_BYTES} bytes of header")
    at = cur.take(4, "magic")
    magic = bytes(cur.win[at:at + 4])
    if magic != GGUF_MAGIC:
        cur.fail("magic", 0, f"the file starts with {magic!r}, not b'GGUF' (not a GGUF file)")
    version = cur.u32("version")
    if version == 0 or version & 0xFFFF == 0:
        cur.fail("version", 4, f"version {version:#x} is not a GGUF version (a file written "
                               "for the other byte order?)")
    if version == 1:
        cur.fail("version", 4, "GGUF version 1 is no longer supported by llama.cpp")
    if version > GGUF_VERSION:
        cur.fail("version", 4, f"GGUF version {version} is newer than this llama.cpp "
                               f"supports ({GGUF_VERSION})")
    parsed.version = version
    n_tensors = cur.i64("n_tensors")
    n_kv = cur.i64("n_kv")
    room = cur.size - _HEADER_BYTES
    if not 0 <= n_tensors <= room // _MIN_TENSOR_BYTES:
        cur.fail("n_tensors", 8, f"{n_tensors} tensors cannot fit in the {room} bytes after "
                                 f"the header (each takes at least {_MIN_TENSOR_BYTES})")
    if not 0 <= n_kv <= (room - n_tensors * _MIN_TENSOR_BYTES) // _MIN_KV_BYTES:
        cur.fail("n_kv", 16, f"{n_kv} key/value pairs and {n_tensors} tensors cannot fit in "
                             f"the {room} bytes after the header")
    return n_tensors, n_kv


def _read_kv(cur: Cursor, parsed: Parsed, index: int, seen: set[bytes]) -> None:
    key_at = cur.pos
    length, raw = cur.string(f"kv[{index}].key", keep=_MAX_KEY_BYTES)
    if length == 0:
        cur.fail(f"kv[{index}].key", key_at, "the key is empty")
    if length > _MAX_KEY_BYTES:
        cur.fail(f"kv[{index}].key", key_at, f"a key of {length} bytes is not a model's")
    if raw in seen:
        cur.fail(f"kv[{index}].key", key_at, f"duplicate key {raw.decode(errors='replace')!r}")
    seen.add(raw)
    key = raw.decode("utf-8", errors="replace")
    name = f"kv[{index}] {key!r}"
    type_at = cur.pos
    value_type = cur.i32(f"{name} type")
    item_type, count = value_type, 1
    if value_type == ARRAY:
        item_at = cur.pos
        item_type = cur.i32(f"{name} item type")
        if not 0 <= item_type < len(TYPE_NAMES) or item_type == ARRAY:
            cur.fail(f"{name} item type", item_at,
                     f"invalid array item type {item_type} (arrays hold u8..f64 or str items)")
        count_at = cur.pos
        count = cur.u64(f"{name} count")
        item_size = 8 if item_type == STRING else _SCALARS[item_type][0]
        if count > GGUF_MAX_ARRAY_ELEMENTS or count * item_size > cur.size - cur.pos:
            cur.fail(f"{name} count", count_at,
                     f"an array of {count} {_type_name(item_type)} items cannot fit in the "
                     f"{cur.size - cur.pos} bytes left in the file")
    elif not 0 <= value_type < len(TYPE_NAMES):
        cur.fail(f"{name} type", type_at, f"invalid GGUF value type {value_type}")
    offset = cur.pos
    value: int | float | bool | bytes | None = None
    c_key = raw.split(b"\0", 1)[0]  # what gguf_find_key compares (strcmp)
    if value_type == ARRAY:
        if item_type == STRING:
            collect: list[bytes] | None = None
            if c_key == _TOKENS_KEY and c_key not in parsed.kvs:
                collect = parsed.tokens = []
            cur.strings(count, name, collect)
        else:
            cur.skip(count * _SCALARS[item_type][0], name)
    elif value_type == STRING:
        length, data = cur.string(f"{name} value")
        value = data if len(data) == length else None
    else:
        size, unpack = _SCALARS[value_type]
        at = cur.take(size, f"{name} value")
        value = unpack(cur.win, at)[0]
    parsed.kvs.setdefault(c_key, KeyValue(index, key, value_type, item_type, count, offset,
                                          value))


def _read_alignment(cur: Cursor, parsed: Parsed) -> None:
    kv = parsed.kvs.get(b"general.alignment")
    if kv is None:
        return
    if kv.type != 4:
        cur.fail(kv.field, kv.offset, f"general.alignment must be a u32, not "
                                      f"{_type_name(kv.type)}")
    assert isinstance(kv.value, int)
    if kv.value == 0 or kv.value & (kv.value - 1):
        cur.fail(kv.field, kv.offset, f"alignment {kv.value} is not a power of 2")
    parsed.alignment = kv.value


def _read_tensor(cur: Cursor, parsed: Parsed, index: int, seen: set[bytes]) -> None:
    at = cur.pos
    length, raw = cur.string(f"tensor[{index}].name", keep=GGML_MAX_NAME)
    if length >= GGML_MAX_NAME:
        cur.fail(f"tensor[{index}].name", at,
                 f"a tensor name of {length} bytes is too long (ggml keeps {GGML_MAX_NAME - 1})")
    tensor_name = raw.decode("utf-8", errors="replace")
    if raw in seen:
        cur.fail(f"tensor[{index}].name", at, f"duplicate tensor name {tensor_name!r}")
    seen.add(raw)
    name = f"tensor[{index}] {tensor_name!r}"
    dims_at = cur.pos
    n_dims = cur.u32(f"{name} n_dims")
    if n_dims > GGML_MAX_DIMS:
        cur.fail(f"{name} n_dims", dims_at, f"{n_dims} dimensions; ggml has at most "
                                            f"{GGML_MAX_DIMS}")
    shape: list[int] = []
    n_elements = 1
    for j in range(n_dims):
        ne_at = cur.pos
        ne = cur.i64(f"{name} ne[{j}]")
        if ne < 0:
            cur.fail(f"{name} ne[{j}]", ne_at, f"dimension {j} is negative ({ne})")
        # gguf.cpp requires every partial product to fit an int64, not only the total
        n_elements = ne if j == 0 else n_elements * ne
        if ne > 1 and n_elements > _INT64_MAX:
            cur.fail(f"{name} ne[{j}]", ne_at, f"the element count overflows int64 at "
                                               f"dimension {j} (shape {(*shape, ne)})")
        shape.append(ne)
    type_at = cur.pos
    type_id = cur.i32(f"{name} type")
    if not 0 <= type_id < GGML_TYPE_COUNT or GGML_TYPES[type_id].blck_size == 0:
        cur.fail(f"{name} type", type_at, f"{type_id} is not a ggml tensor type this "
                                          "llama.cpp can read")
    info = GGML_TYPES[type_id]
    row = shape[0] if shape else 1
    if row % info.blck_size:
        cur.fail(f"{name} type", type_at, f"rows of {row} elements are not a whole number of "
                                          f"{info.name} blocks ({info.blck_size} each)")
    nbytes = n_elements // info.blck_size * info.type_size
    if nbytes > _SIZE_MAX:
        cur.fail(f"{name} type", type_at, f"{nbytes} bytes of data do not fit a size_t")
    offset_at = cur.pos
    offset = cur.u64(f"{name} offset")
    parsed.tensors.append(TensorInfo(index, tensor_name, tuple(shape), type_id, offset,
                                     nbytes, offset_at))


def _check_data(cur: Cursor, parsed: Parsed) -> None:
    align = parsed.alignment
    start = cur.pos
    if parsed.tensors:
        start = -(-start // align) * align
        if start > cur.size:
            cur.fail("data section", cur.pos, f"the tensor data would start at byte {start}, "
                                              f"past the end of the file ({cur.size} bytes)")
    parsed.data_offset = start
    expected = 0
    for tensor in parsed.tensors:
        name = f"tensor[{tensor.index}] {tensor.name!r} offset"
        if tensor.offset != expected:
            cur.fail(name, tensor.at, f"data offset {tensor.offset} is not {expected}: tensors "
                                      f"are stored in order, each padded to {align} bytes")
        if (start + tensor.offset) % _TENSOR_ALIGNMENT:
            cur.fail(name, tensor.at, f"its data would start at byte {start + tensor.offset}, "
                                      f"not a multiple of {_TENSOR_ALIGNMENT}: llama.cpp maps "
                                      "tensor data in place and aborts on a misaligned buffer "
                                      f"(general.alignment {align} is too small)")
        end = start + tensor.offset + tensor.nbytes
        if end > cur.size:
            cur.fail(name, tensor.at, f"its {tensor.nbytes} bytes of data would end at byte "
                                      f"{end}, past the end of the file ({cur.size} bytes)")
        expected += -(-tensor.nbytes // align) * align
        if expected > _SIZE_MAX:
            cur.fail(name, tensor.at, "the data section size overflows a size_t")
    parsed.data_size = expected


def parse(cur: Cursor) -> Parsed:
    """The structural walk over an opened file (raises ``GGUFFormatError``)."""
    parsed = Parsed(cur.path, cur.size)
    n_tensors, n_kv = _read_header(cur, parsed)
    parsed.n_kv = n_kv
    seen: set[bytes] = set()
    for index in range(n_kv):
        _read_kv(cur, parsed, index, seen)
    _read_alignment(cur, parsed)
    seen = set()
    for index in range(n_tensors):
        _read_tensor(cur, parsed, index, seen)
    _check_data(cur, parsed)
    return parsed


def _open(path: str) -> tuple[int, int]:
    # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"model file not found: {path}", path=path) from exc
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror}", path=path) from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ModelLoadError(f"{path} is not a regular file", path=path)
    return fd, info.st_size


def check_file(path: str) -> Parsed:
    """Open ``path`` and run the structural walk and the hazard checks on it."""
    from .hazards import check_hazards

    fd, size = _open(path)
    try:
        with open(fd, "rb", buffering=0) as file:
            cur = Cursor(file, size, path)
            parsed = parse(cur)
            check_hazards(cur, parsed)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}", path=path) from exc
    return parsed


def validate_gguf(path: str | os.PathLike[str], *, check_splits: bool = True) -> GGUFSummary:
    """Check that ``path`` is a well-formed GGUF file llama.cpp can open without crashing.

    Follows gguf.cpp's rules (magic, version, counts against the file size, string and
    array lengths, value types, tensor names, dimensions, types, offsets, alignment), checks
    that every tensor's data lies inside the file, and rejects values on which llama.cpp
    would abort the process. The other files of a split model (``-00001-of-00003.gguf``)
    are checked too unless ``check_splits=False``. Reads only the header.

    Raises ``GGUFFormatError`` (a ``ModelLoadError``) naming the field and its byte offset.
    """
    from .hazards import check_shards

    fspath = os.fspath(path)
    parsed = check_file(fspath)
    shards = check_shards(parsed) if check_splits else []
    return GGUFSummary(
        path=Path(fspath), version=parsed.version, n_kv=parsed.n_kv,
        n_tensors=len(parsed.tensors), alignment=parsed.alignment,
        data_offset=parsed.data_offset, data_size=parsed.data_size, file_size=parsed.size,
        architecture=parsed.string("general.architecture"), shards=tuple(shards))
