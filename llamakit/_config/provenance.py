"""Provenance of configuration values: which file, variable or argument set each key."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class _Origin:
    """Where a value came from: a config file, an environment variable or an argument."""

    kind: Literal["file", "env", "argument", "flag"]
    # the file's path, the variable's name, the keyword argument's name or the command-line
    # flag (``--top-p``); flags are the command line's keyword arguments, of the same rank
    name: str

    @property
    def rank(self) -> int:
        return ("file", "env", "argument").index("argument" if self.kind == "flag" else self.kind)

    @property
    def file(self) -> Path | None:
        return Path(self.name) if self.kind == "file" else None

    def describe(self) -> str:
        if self.kind == "file":
            return f"config file {self.name}"
        if self.kind == "env":
            return f"environment variable {self.name}"
        if self.kind == "flag":
            kind = "flag" if self.name.startswith("-") else "argument"
            return f"command-line {kind} {self.name}"
        return f"keyword argument {self.name}="


@dataclass
class _Provenance:
    """The origin of every value set by a layer, keyed by its path of keys.

    Scalars (and lists) are recorded where they are; tables only while empty, since a
    non-empty table's origin is that of the values in it.
    """

    values: dict[tuple[str | int, ...], _Origin] = field(default_factory=dict)
    empty_tables: set[tuple[str | int, ...]] = field(default_factory=set)

    def forget(self, path: tuple[str | int, ...]) -> None:
        """Drop what is recorded at ``path`` and below it."""
        n = len(path)
        for key in [k for k in self.values if k[:n] == path]:
            del self.values[key]
            self.empty_tables.discard(key)

    def lookup(self, loc: Sequence[str | int], *, tables: bool = True) -> _Origin | None:
        """The origin of the value at ``loc``: the value itself, one it is inside, or the
        latest layer that set something under it. ``tables=False`` ignores empty tables."""
        parts = tuple(loc)
        for n in range(len(parts), 0, -1):
            prefix = parts[:n]
            origin = self.values.get(prefix)
            if origin is not None and (tables or prefix not in self.empty_tables):
                return origin
        if not tables:
            return None
        under = [o for k, o in self.values.items() if k[: len(parts)] == parts]
        return max(under, key=lambda o: o.rank) if under else None
