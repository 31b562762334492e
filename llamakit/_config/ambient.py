"""The process's own config: ``$LLAMAKIT_CONFIG`` and the ``LLAMAKIT_*`` environment.

Parts of llamakit that take a setting without being handed a config (the progress mode of
``progress=None``, the ``[backends.*]`` tables of ``resolve_backend()``, the plugins that
``[plugins] disable`` leaves out) read it here, so the file is parsed once and not once per
reader. The cache is keyed by the ``LLAMAKIT_*`` variables and the file's size and time:
a program (or a test) that changes them sees the new values without clearing anything.
"""

from __future__ import annotations

import functools
import os

from .loader import _ENV_CONFIG, load_config
from .schema import Config

__all__ = ["ambient_config", "clear_ambient_config"]


def _file_stamp(path: str | None) -> tuple[int, int] | None:
    if not path:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None  # load_config reports the missing file
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=4)
def _load(env: tuple[tuple[str, str], ...], stamp: tuple[int, int] | None) -> Config:
    del stamp  # part of the cache key only
    return load_config(env=dict(env))


def ambient_config() -> Config:
    """The config of ``$LLAMAKIT_CONFIG`` and the environment, loaded once per distinct
    environment (a ``ConfigError`` if either is wrong)."""
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("LLAMAKIT_")))
    return _load(env, _file_stamp(os.environ.get(_ENV_CONFIG)))


def clear_ambient_config() -> None:
    """Forget the loaded config (tests; a file rewritten within the clock's resolution)."""
    _load.cache_clear()
