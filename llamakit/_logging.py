"""Where llama.cpp's log lines go: the ``logging`` logger ``llamakit.native``.

Quiet by default: warnings and errors only. The native callback drops lines below the
threshold before building Python strings, so a quiet process pays almost nothing.
"""

from __future__ import annotations

import logging

__all__ = ["get_verbosity", "native_logger", "set_verbosity"]

native_logger = logging.getLogger("llamakit.native")
logging.getLogger("llamakit").addHandler(logging.NullHandler())

_NAMES = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "warn": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}
_threshold = logging.WARNING
native_logger.setLevel(_threshold)


def set_verbosity(level: int | str) -> None:
    """Set the lowest level of llama.cpp log line kept: a ``logging`` level or its name."""
    global _threshold
    if isinstance(level, str):
        try:
            value = _NAMES[level.lower()]
        except KeyError:
            raise ValueError(f"unknown verbosity {level!r}; use one of {sorted(_NAMES)}") from None
    elif isinstance(level, int) and not isinstance(level, bool):
        value = level
    else:
        raise TypeError(f"verbosity must be a logging level or its name, not {level!r}")
    _threshold = value
    native_logger.setLevel(value)


# Warnings llama.cpp prints while loading well-known models, about the file or a default,
# that a user can do nothing about: kept at INFO (shown with --verbose), not WARNING.
_NOTICES = ("control-looking token:", "using full-size SWA cache")


def line_level(line: str, level: int) -> int:
    """The level a llama.cpp log line is logged at: its own, with notices demoted."""
    if level == logging.WARNING and any(notice in line for notice in _NOTICES):
        return logging.INFO
    return level


def get_verbosity() -> int:
    """The current threshold as a ``logging`` level."""
    return _threshold


def threshold() -> int:
    return _threshold
