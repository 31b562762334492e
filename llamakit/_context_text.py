"""Turning generated token bytes into safe text pieces, with stop strings."""

from __future__ import annotations

import codecs
from collections.abc import Sequence

from ._config.fields import check_field
from ._config.schema import SamplingConfig

__all__ = ["TextAssembler", "stop_strings"]

_utf8_decode = codecs.utf_8_decode


def stop_strings(stop: str | Sequence[str] | None) -> list[str]:
    if stop is None:
        return []
    return list(check_field(SamplingConfig, "stop", stop))  # the [sampling] key's own check


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that could begin a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class TextAssembler:
    """Turns token bytes into text pieces that are safe to show.

    Bytes of an unfinished UTF-8 character wait for the rest; text that could be the
    beginning of a stop string waits until it is known not to be one.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = list(stops)
        # The bytes of an unfinished character (what codecs' incremental UTF-8 decoder
        # buffers; decoded here with its own function, one Python frame less a token).
        self._undecoded = b""
        self._pending = ""
        self.stopped = False
        self.parts: list[str] = []

    def feed(self, data: bytes) -> str:
        """Add a token's bytes; return the text now ready (possibly empty)."""
        if self._undecoded:
            data = self._undecoded + data
        decoded, used = _utf8_decode(data, "replace", False)
        self._undecoded = data[used:]
        if not self.stops:  # nothing held back but an unfinished character
            if decoded:
                self.parts.append(decoded)
            return decoded
        pending = self._pending + decoded
        keep = 0
        if self.stops:
            cut = min((i for i in (pending.find(s) for s in self.stops) if i >= 0), default=-1)
            if cut >= 0:
                self.stopped = True
                self._pending = ""
                return self._emit(pending[:cut])
            keep = _held_back(pending, self.stops)
        self._pending = pending[len(pending) - keep:]
        return self._emit(pending[:len(pending) - keep])

    def tail(self) -> bytes:
        """The output's last bytes that a stop string may begin in: the text held back
        (the longest end of the output that begins a stop string) and an unfinished
        character's bytes. Only what a stop matched over bytes may start in: the held text
        is re-encoded, so a stop holding U+FFFD (a replaced byte) is not for byte search."""
        if not self.stops:
            return b""
        return self._pending.encode("utf-8") + self._undecoded if self._pending \
            else self._undecoded

    def finish(self) -> str:
        """Flush what was held back (nothing after a stop string matched)."""
        if self.stopped:
            return ""
        rest = self._pending + _utf8_decode(self._undecoded, "replace", True)[0]
        self._undecoded = b""
        self._pending = ""
        return self._emit(rest)

    def _emit(self, text: str) -> str:
        if text:
            self.parts.append(text)
        return text

    @property
    def text(self) -> str:
        return "".join(self.parts)
