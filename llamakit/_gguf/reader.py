"""Bounds-checked little-endian reads of a GGUF file through a small read window.

Every read names the field it is for, so a short or lying file is reported as the field
and byte offset where it went wrong. Integers are Python ints: sizes computed from them
cannot wrap, and each limit of gguf.cpp is checked against the exact value.

The file is read with plain ``read()`` calls into a window of about a megabyte rather
than memory-mapped: a file that another process truncates while it is being checked then
reads short (a clean error) instead of raising SIGBUS, and a header that claims a huge
string is skipped by seeking, never by reading it.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, NoReturn

from .._errors import GGUFFormatError

__all__ = ["GGUF_MAX_ARRAY_ELEMENTS", "GGUF_MAX_STRING_LENGTH", "Cursor"]

# gguf.cpp's limits (GGUF_MAX_STRING_LENGTH, GGUF_MAX_ARRAY_ELEMENTS).
GGUF_MAX_STRING_LENGTH = 1024 * 1024 * 1024
GGUF_MAX_ARRAY_ELEMENTS = 1024 * 1024 * 1024

_WINDOW = 1 << 20

_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_U64 = struct.Struct("<Q").unpack_from
_I64 = struct.Struct("<q").unpack_from


class Cursor:
    """A read position (``pos``, absolute) in the ``size``-byte file ``path``."""

    __slots__ = ("file", "path", "pos", "size", "win", "win_end", "win_start")

    def __init__(self, file: BinaryIO, size: int, path: str) -> None:
        self.file = file
        self.size = size
        self.path = path
        self.pos = 0
        self.win = b""
        self.win_start = 0
        self.win_end = 0

    def fail(self, field: str, offset: int, reason: str) -> NoReturn:
        raise GGUFFormatError(reason, path=self.path, field=field, offset=offset)

    def window(self, start: int, n: int, field: str) -> int:
        """Index in ``win`` of absolute offset ``start``, with ``n`` bytes loaded after it."""
        if self.win_start <= start and start + n <= self.win_end:
            return start - self.win_start
        if n > self.size - start:
            self.fail(field, start, f"needs {n} bytes but the file ends after "
                                    f"{max(self.size - start, 0)} (it is truncated or a "
                                    "length before this lies)")
        self.file.seek(start)
        data = self.file.read(min(max(n, _WINDOW), self.size - start))
        if len(data) < n:
            self.fail(field, start, "the file became shorter while it was being read")
        self.win, self.win_start, self.win_end = data, start, start + len(data)
        return 0

    def take(self, n: int, field: str) -> int:
        """Index in ``win`` of the next ``n`` bytes, which are consumed."""
        at = self.window(self.pos, n, field)
        self.pos += n
        return at

    def skip(self, n: int, field: str) -> None:
        """Consume ``n`` bytes without reading them."""
        if n > self.size - self.pos:
            self.window(self.pos, n, field)  # raises with the reason
        self.pos += n

    def u32(self, field: str) -> int:
        at = self.take(4, field)  # first: it may replace the window
        value: int = _U32(self.win, at)[0]
        return value

    def i32(self, field: str) -> int:
        at = self.take(4, field)  # first: it may replace the window
        value: int = _I32(self.win, at)[0]
        return value

    def u64(self, field: str) -> int:
        at = self.take(8, field)  # first: it may replace the window
        value: int = _U64(self.win, at)[0]
        return value

    def i64(self, field: str) -> int:
        at = self.take(8, field)  # first: it may replace the window
        value: int = _I64(self.win, at)[0]
        return value

    def _length(self, field: str) -> int:
        at = self.pos
        length = self.u64(f"{field} length")
        if length > GGUF_MAX_STRING_LENGTH:
            self.fail(f"{field} length", at,
                      f"string length {length} exceeds gguf's limit of {GGUF_MAX_STRING_LENGTH}")
        if length > self.size - self.pos:
            self.fail(f"{field} length", at,
                      f"string length {length} runs past the end of the file "
                      f"({self.size - self.pos} bytes remain)")
        return length

    def string(self, field: str, keep: int = 4096) -> tuple[int, bytes]:
        """A GGUF string (u64 length, bytes): its length and its first ``keep`` bytes."""
        length = self._length(field)
        head = min(length, keep)
        at = self.window(self.pos, head, field)
        data = self.win[at:at + head]
        self.pos += length
        return length, data

    def skip_string(self, field: str) -> None:
        self.pos += self._length(field)

    def strings(self, count: int, field: str, collect: list[bytes] | None = None) -> None:
        """Walk ``count`` strings (an array's items), checking each length; with
        ``collect``, append each item's bytes to it.

        The hot loop of the validator (a vocabulary has 10^5..10^6 strings): it works on
        offsets into the window and leaves every check but one per item to the rare case
        where a string ends past the window.
        """
        size, limit, unpack = self.size, GGUF_MAX_STRING_LENGTH, _U64
        win, base = self.win, self.win_start
        off = self.pos - base
        if off < 0 or off > len(win):
            self.window(self.pos, 0, field)
            win, base, off = self.win, self.win_start, 0
        wlen = len(win)
        for i in range(count):
            if off + 8 > wlen:
                pos = self.pos = base + off
                if pos + 8 > size:
                    self._length(f"{field}[{i}]")  # raises: truncated
                self.window(pos, 8, f"{field}[{i}]")
                win, base, wlen, off = self.win, self.win_start, len(self.win), 0
            start = off + 8
            off = start + unpack(win, off)[0]
            if off > wlen:
                pos = base + start - 8
                if off - start > limit or base + off > size:
                    self.pos = pos
                    self._length(f"{field}[{i}]")  # raises with the precise reason
                if collect is not None:
                    self.window(pos, off - start + 8, f"{field}[{i}]")
                    win, base, wlen = self.win, self.win_start, len(self.win)
                    start, off = 8, off - start + 8
            if collect is not None:
                collect.append(win[start:off])
        self.pos = base + off
