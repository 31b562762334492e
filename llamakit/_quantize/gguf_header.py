"""Reading a GGUF file's header: its key/value pairs and tensor infos, never its data.

``gguf.GGUFReader`` decodes every array item into numpy objects; a quantizer only needs the
tensor shapes, a few scalars and the byte size of everything else, so this walks the header
with ``struct`` over an ``mmap`` (a 150k-token vocabulary takes milliseconds).
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GGUF_MAGIC", "GgufHeader", "GgufKV", "GgufTensor", "read_header", "split_files"]

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32  # GGUF_DEFAULT_ALIGNMENT (gguf.h)

# GGUF value types (gguf.h enum gguf_type) -> struct format of a scalar.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9
# Names of the GGUF value types, for messages.
TYPE_NAMES = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool",
              8: "str", 9: "array", 10: "u64", 11: "i64", 12: "f64"}
_SPLIT_NAME = re.compile(r"^(?P<prefix>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
_MAX_DIMS = 4  # GGML_MAX_DIMS


@dataclass(frozen=True)
class GgufKV:
    """One key/value pair: its GGUF type, its value (scalars, strings and small string
    arrays only) and the bytes its value takes in the file."""

    key: str
    type: int
    value: int | float | bool | str | tuple[str, ...] | None
    value_size: int


@dataclass(frozen=True)
class GgufTensor:
    """One tensor info: ``shape`` in ggml order (``shape[0]`` is the row length)."""

    name: str
    shape: tuple[int, ...]
    type: int
    offset: int


@dataclass(frozen=True)
class GgufHeader:
    path: Path
    version: int
    kvs: tuple[GgufKV, ...]
    tensors: tuple[GgufTensor, ...]
    alignment: int
    data_offset: int

    def kv(self, key: str) -> GgufKV | None:
        return next((kv for kv in self.kvs if kv.key == key), None)

    def value(self, key: str) -> int | float | bool | str | tuple[str, ...] | None:
        found = self.kv(key)
        return None if found is None else found.value


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes, size: int) -> None:
        self.buf, self.size, self.pos = buf, size, 0

    def take(self, fmt: str) -> int | float | bool:
        n = struct.calcsize(fmt)
        if self.pos + n > self.size:
            raise ValueError("the header is truncated")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value  # type: ignore[no-any-return]

    def count(self, what: str) -> int:
        n = int(self.take("<Q"))
        if n > self.size:  # each item takes at least a byte: a bigger count is corrupt
            raise ValueError(f"implausible {what} count {n}")
        return n

    def string(self) -> str:
        n = self.count("string length")
        if self.pos + n > self.size:
            raise ValueError("the header is truncated")
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, n: int) -> None:
        for _ in range(n):
            length = self.count("string length")
            self.pos += length
            if self.pos > self.size:
                raise ValueError("the header is truncated")


def _value(cur: _Cursor, vtype: int) -> int | float | bool | str | tuple[str, ...] | None:
    if vtype in _SCALARS:
        return cur.take(_SCALARS[vtype])
    if vtype == STRING:
        return cur.string()
    if vtype != ARRAY:
        raise ValueError(f"unknown GGUF value type {vtype}")
    item_type = int(cur.take("<I"))
    n = cur.count("array item")
    if item_type == STRING:
        if n <= 64:
            return tuple(cur.string() for _ in range(n))
        cur.skip_strings(n)
        return None
    if item_type not in _SCALARS:
        raise ValueError(f"unsupported GGUF array item type {item_type}")
    cur.pos += n * struct.calcsize(_SCALARS[item_type])
    if cur.pos > cur.size:
        raise ValueError("the header is truncated")
    return None


def read_header(path: Path) -> GgufHeader:
    """Parse ``path``'s GGUF header; ``ValueError`` says what is wrong with it."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < 24:
            raise ValueError("the file is too short to be a GGUF model")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[:4] != GGUF_MAGIC:
                raise ValueError(f"it starts with {bytes(buf[:4])!r}, not b'GGUF'")
            cur = _Cursor(buf, size)
            cur.pos = 4
            version = int(cur.take("<I"))
            if version not in (2, 3):
                raise ValueError(f"GGUF version {version} is not supported (2 or 3 are)")
            n_tensors, n_kv = cur.count("tensor"), cur.count("key/value")
            kvs = []
            for _ in range(n_kv):
                key = cur.string()
                vtype = int(cur.take("<I"))
                start = cur.pos
                value = _value(cur, vtype)
                kvs.append(GgufKV(key, vtype, value, cur.pos - start))
            tensors = []
            for _ in range(n_tensors):
                name = cur.string()
                n_dims = int(cur.take("<I"))
                if not 1 <= n_dims <= _MAX_DIMS:
                    raise ValueError(f"tensor {name!r} has {n_dims} dimensions")
                shape = tuple(int(cur.take("<q")) for _ in range(n_dims))
                if any(d < 0 for d in shape):
                    raise ValueError(f"tensor {name!r} has a negative dimension")
                tensors.append(GgufTensor(name, shape, int(cur.take("<I")),
                                          int(cur.take("<Q"))))
            header_end = cur.pos
    alignment = next((int(kv.value) for kv in kvs  # type: ignore[arg-type]
                      if kv.key == "general.alignment" and kv.type == 4), DEFAULT_ALIGNMENT)
    if alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"general.alignment {alignment} is not a power of two")
    data_offset = -(-header_end // alignment) * alignment
    return GgufHeader(path=path, version=version, kvs=tuple(kvs), tensors=tuple(tensors),
                      alignment=alignment, data_offset=data_offset)


def split_files(first: GgufHeader) -> list[Path]:
    """Every shard of a split model, the given first one included, in order.

    llama.cpp finds the others by the ``<prefix>-00001-of-0000N.gguf`` naming of the first.
    """
    count = first.value("split.count")
    if not isinstance(count, int) or count <= 1:
        return [first.path]
    match = _SPLIT_NAME.match(first.path.name)
    if match is None or int(match["no"]) != 1 or int(match["count"]) != count:
        raise ValueError(f"it is shard of a {count}-way split model; pass the first shard, "
                         "named <prefix>-00001-of-" + f"{count:05d}.gguf")
    prefix = match["prefix"]
    return [first.path.with_name(f"{prefix}-{i:05d}-of-{count:05d}.gguf")
            for i in range(1, count + 1)]
