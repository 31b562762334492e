"""Progress bars on stderr for long operations: model loading, quantization, variant builds.

Whether a bar is drawn follows one setting, ``[ui] progress`` (``LLAMAKIT_UI__PROGRESS``):

- ``"auto"`` (default): when stderr is a terminal;
- ``"always"``: also when it is not (a log file shows the bar's redraws as ``\\r`` lines);
- ``"never"``: not at all.

Functions that report progress take ``progress=``: None follows the setting, ``True`` is
``"auto"``, ``False`` is ``"never"``, a mode name is that mode, and a callable receives the
raw numbers instead of a bar being drawn. The command line sets the process default
(:func:`set_default_mode`) from its ``--progress`` flag and ``--config`` file.

No dependency: a bar is one line redrawn in place with ``\\r``, at most ten times a second,
ended with a newline when the work is complete (so log lines that follow start on a line
of their own) or when it is closed.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import Final, Literal, TextIO, cast, get_args

from ._errors import ConfigError

__all__ = ["MODES", "ProgressBar", "ProgressMode", "build_progress", "default_mode",
           "progress_bar", "resolve_mode", "set_default_mode"]

ProgressMode = Literal["auto", "always", "never"]
MODES: Final[tuple[str, ...]] = get_args(ProgressMode)

_default: ProgressMode | None = None
_BAR_WIDTH: Final = 24
_REDRAW_S: Final = 0.1


def set_default_mode(mode: ProgressMode | None) -> None:
    """Make ``mode`` the process's default for ``progress=None`` (None: the config's
    ``[ui] progress`` again). The command line calls this once it has read its flags."""
    global _default
    if mode is not None and mode not in MODES:
        raise ConfigError(f"progress must be one of {', '.join(MODES)}, got {mode!r}",
                          key="ui.progress")
    _default = mode


def default_mode() -> ProgressMode:
    """The mode of ``progress=None``: the process default, else ``[ui] progress`` of
    ``$LLAMAKIT_CONFIG`` and the environment (``LLAMAKIT_UI__PROGRESS``)."""
    if _default is not None:
        return _default
    from ._config import ambient_config

    return ambient_config().ui.progress


def resolve_mode(progress: object, what: str = "progress") -> ProgressMode:
    """The mode a ``progress=`` argument that is not a callable stands for."""
    if progress is None:
        return default_mode()
    if progress is True:
        return "auto"
    if progress is False:
        return "never"
    if isinstance(progress, str) and progress in MODES:
        return cast("ProgressMode", progress)
    raise ConfigError(f"{what} must be True, False, None, one of {', '.join(map(repr, MODES))} "
                      f"or a callable, got {progress!r}", key=what)


def progress_bar(progress: object, label: str, *, stream: TextIO | None = None,
                 percent: bool = False, what: str = "progress") -> ProgressBar | None:
    """The bar to draw for ``progress`` (see the module), or None when nothing is drawn.

    ``stream`` defaults to ``sys.stderr`` as it is at the time of the call.
    """
    mode = resolve_mode(progress, what)
    target = sys.stderr if stream is None else stream
    if mode == "never" or target is None:
        return None
    if mode == "auto":
        try:
            if not target.isatty():
                return None
        except (AttributeError, ValueError):  # a closed or unusual stream
            return None
    return ProgressBar(target, label, percent=percent)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def build_progress(progress: object, backend: str
                   ) -> tuple[Callable[[str, int, int], None] | None, ProgressBar | None]:
    """``build_variant``'s progress callback for ``progress`` and the bar it draws (close
    it afterwards): ``building cpu [####....] 120/283 compile``."""
    if callable(progress):
        return cast("Callable[[str, int, int], None]", progress), None
    bar = progress_bar(progress, f"building {backend}")
    if bar is None:
        return None, None
    drawn = bar

    def callback(stage: str, done: int, total: int) -> None:
        drawn(done, total, stage)

    return callback, bar


class ProgressBar:
    """A one-line bar, ``label [#####...] done/total detail``, redrawn in place.

    Call it with ``(done, total, detail)``; ``percent=True`` shows ``42%`` instead of
    ``done/total``. Calls from several threads are serialised. ``close()`` ends the line
    if the bar is still open; the bar also ends its line by itself when ``done`` reaches
    ``total``.
    """

    def __init__(self, stream: TextIO, label: str, *, percent: bool = False) -> None:
        self.stream = stream
        self.label = label
        self.percent = percent
        self.last = 0.0
        self.drawn = False  # a line of ours is open (no newline written after it yet)
        self._lock = threading.Lock()

    def __call__(self, done: float, total: float, detail: str = "") -> None:
        finished = total > 0 and done >= total
        with self._lock:
            now = time.monotonic()
            if not finished and self.drawn and now - self.last < _REDRAW_S:
                return
            self.last = now
            columns = max(shutil.get_terminal_size(fallback=(80, 24)).columns - 1, 10)
            share = min(max(done / total, 0.0), 1.0) if total > 0 else 1.0
            filled = int(_BAR_WIDTH * share)
            count = f"{100 * share:3.0f}%" if self.percent else f"{_num(done)}/{_num(total)}"
            text = f"{self.label} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {count}"
            if detail:
                text += f" {detail}"
            self.stream.write("\r" + text[:columns].ljust(columns))
            if finished:
                self.stream.write("\n")
            self.stream.flush()
            self.drawn = not finished

    def close(self) -> None:
        """End the bar's line (if one is open)."""
        with self._lock:
            if self.drawn:
                self.stream.write("\n")
                self.stream.flush()
                self.drawn = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
