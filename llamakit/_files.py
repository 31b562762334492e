"""Reading files a user names without hanging on a FIFO or a device, or reading without end.

``open()`` on a FIFO blocks until a writer comes, and ``/dev/zero`` never ends: both reach
``read()`` before any check of what was read. The file is opened non-blocking, must be a
regular file, and is read up to a limit.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["NotRegularFileError", "read_regular_file"]


class NotRegularFileError(OSError):
    """The path is not a regular file (a folder, FIFO, socket or device), or it is larger
    than the caller's limit; callers turn it into their own typed error."""


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else \
                "a FIFO" if stat.S_ISFIFO(info.st_mode) else \
                "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else \
                "not a regular file"
            raise NotRegularFileError(f"{path} is {kind}, not a regular file")
        if info.st_size > limit:
            raise NotRegularFileError(f"{path} has {info.st_size} bytes, more than the limit "
                                      f"of {limit}")
        chunks: list[bytes] = []
        size = 0
        while True:  # st_size of some files (procfs) is 0: read up to the limit regardless
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise NotRegularFileError(f"{path} is larger than the limit of {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)
