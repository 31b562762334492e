"""Importance matrices: reading llama-imatrix's files (GGUF and legacy ``.dat``).

llama.cpp reads them in ``common`` (``common_imatrix_load``), which is not part of
libllama, so this is a Python port of that reader and of llama-quantize's normalisation:
each value becomes its mean over the calls (per expert for GGUF files).
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import ModelLoadError, QuantizeError
from .._gguf.side_files import validate_side_file
from .gguf_header import GGUF_MAGIC, read_header

__all__ = ["Imatrix", "load_imatrix"]

_F32 = 0  # GGML_TYPE_F32


@dataclass(frozen=True)
class Imatrix:
    """Per-tensor importance values (``name -> float32[ne0 * n_expert]``) and provenance."""

    entries: Mapping[str, np.ndarray]
    path: Path | None = None
    datasets: tuple[str, ...] = ()
    chunk_count: int = 0

    def kv_overrides(self) -> list[tuple[str, int | str]]:
        """The ``quantize.imatrix.*`` keys llama-quantize records in the output file."""
        found: list[tuple[str, int | str]] = []
        if self.path is not None:
            found.append(("quantize.imatrix.file", str(self.path)))
        if self.datasets:
            found.append(("quantize.imatrix.dataset", self.datasets[0]))
        found.append(("quantize.imatrix.entries_count", len(self.entries)))
        if self.chunk_count > 0:
            found.append(("quantize.imatrix.chunks_count", self.chunk_count))
        return found


def _from_gguf(path: Path) -> Imatrix:
    try:
        validate_side_file(str(path), "imatrix")
    except ModelLoadError as exc:
        raise ValueError(str(exc)) from exc
    header = read_header(path)
    sums: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    for tensor in header.tensors:
        for suffix, table in ((".in_sum2", sums), (".counts", counts)):
            if tensor.name.endswith(suffix):
                table[tensor.name[: -len(suffix)]] = tensor
    if not sums and not counts:
        raise ValueError("it has no '<tensor>.in_sum2' / '<tensor>.counts' pairs")
    entries: dict[str, np.ndarray] = {}
    with open(path, "rb") as handle:
        def read(tensor: Any) -> np.ndarray:
            if tensor.type != _F32:
                raise ValueError(f"{tensor.name} must be F32")
            handle.seek(header.data_offset + tensor.offset)
            n = math.prod(tensor.shape)
            values = np.fromfile(handle, dtype="<f4", count=n)
            if values.size != n:
                raise ValueError(f"{tensor.name} is truncated")
            return values

        for name in sorted(set(sums) | set(counts)):
            if name not in sums or name not in counts:
                raise ValueError(f"mismatched sums and counts for {name}")
            total, count = read(sums[name]), np.rint(read(counts[name]))
            if count.size == 0 or total.size % count.size:
                raise ValueError(f"{name}: {total.size} sums do not split into "
                                 f"{count.size} experts")
            per = total.reshape(count.size, -1)
            mean = np.where(count[:, None] > 0,
                            per / np.where(count > 0, count, 1)[:, None], 1.0)
            entries[name] = mean.reshape(-1).astype(np.float32)
    datasets = header.value("imatrix.datasets")
    chunks = header.value("imatrix.chunk_count")
    return Imatrix(entries=entries, path=path,
                   datasets=datasets if isinstance(datasets, tuple) else (),
                   chunk_count=chunks if isinstance(chunks, int) else 0)


def _from_legacy(path: Path) -> Imatrix:
    data = path.read_bytes()
    pos = 0

    def take(fmt: str) -> Any:
        nonlocal pos
        if pos + struct.calcsize(fmt) > len(data):
            raise ValueError("the file is truncated")
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values[0]

    n_entries = take("<i")
    if n_entries < 1:
        raise ValueError("it holds no entries")
    entries: dict[str, np.ndarray] = {}
    for _ in range(n_entries):
        length = take("<i")
        if length < 0 or pos + length > len(data):
            raise ValueError("a tensor name is truncated")
        name = data[pos:pos + length].decode("utf-8", errors="replace")
        pos += length
        ncall, nval = take("<i"), take("<i")
        if nval < 1 or pos + 4 * nval > len(data):
            raise ValueError(f"the values of {name} are truncated")
        values = np.frombuffer(data, dtype="<f4", count=nval, offset=pos).astype(np.float32)
        pos += 4 * nval
        entries[name] = values / ncall if ncall > 0 else values
    chunk_count = 0
    datasets: tuple[str, ...] = ()
    if pos + 4 <= len(data):
        chunk_count = take("<i")
        if pos + 4 <= len(data):
            length = take("<i")
            if 0 < length <= len(data) - pos:
                datasets = (data[pos:pos + length].decode("utf-8", errors="replace"),)
    return Imatrix(entries=entries, path=path, datasets=datasets, chunk_count=chunk_count)


def load_imatrix(source: object) -> Imatrix:
    """An ``Imatrix`` from a file path or a ``{tensor name: values}`` mapping."""
    if isinstance(source, Mapping):
        entries = {}
        for name, values in source.items():
            try:
                array = np.asarray(values, dtype=np.float32)
            except (TypeError, ValueError):
                array = np.empty(0, dtype=np.float32)
            if not isinstance(name, str) or array.ndim != 1 or not array.size:
                raise QuantizeError("imatrix entries map tensor names to non-empty 1-D "
                                    f"arrays of numbers; got {name!r}")
            entries[name] = array
        imatrix = Imatrix(entries=entries)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(os.fspath(source))
        if not path.is_file():
            raise QuantizeError(f"imatrix file not found: {path}", path=path)
        try:
            with open(path, "rb") as handle:
                is_gguf = handle.read(4) == GGUF_MAGIC
            imatrix = _from_gguf(path) if is_gguf else _from_legacy(path)
        except (OSError, ValueError) as exc:
            raise QuantizeError(f"{path} is not an importance matrix llama-imatrix wrote: "
                                f"{exc}", path=path) from exc
    else:
        raise QuantizeError("imatrix must be a path or a mapping of tensor names to arrays, "
                            f"got {type(source).__name__}")
    if not imatrix.entries:
        raise QuantizeError("the importance matrix has no entries", path=imatrix.path)
    for name, values in imatrix.entries.items():
        if not np.isfinite(values).all():
            raise QuantizeError(f"imatrix entry {name!r} holds non-finite values",
                                path=imatrix.path)
    return imatrix
