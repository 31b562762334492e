"""CUDA architectures: parsing the setting, the default, and which devices a build runs on.

An entry is CMake's ``CMAKE_CUDA_ARCHITECTURES`` syntax: ``90`` (machine code for sm_90
plus PTX for compute_90), ``90-real`` (machine code only), ``90-virtual`` (PTX only),
optionally with ``a`` (architecture-specific: that exact device generation) or ``f``
(family-specific) after the number. ``native``, ``all`` and ``all-major`` are refused: they
hide the real list from the build key and from the check below.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from llamakit import ConfigError

__all__ = ["FALLBACK", "Arch", "covers", "default_architectures", "format_architectures",
           "parse_architectures"]

FALLBACK = "80-virtual;90"
"""Without a visible device: PTX for Ampere and later (the driver compiles it on first use,
once), and machine code for Hopper. Two compilation passes, so the build stays minutes."""

_ENTRY = re.compile(r"^(?P<number>[1-9]\d{1,2})(?P<suffix>[af]?)(?:-(?P<kind>real|virtual))?$")
_REFUSED = {"native", "all", "all-major"}


@dataclass(frozen=True)
class Arch:
    number: int
    suffix: str  # "", "a" or "f"
    kind: str  # "both", "real" or "virtual"

    @property
    def capability(self) -> tuple[int, int]:
        return divmod(self.number, 10)

    def __str__(self) -> str:
        kind = "" if self.kind == "both" else f"-{self.kind}"
        return f"{self.number}{self.suffix}{kind}"


def parse_architectures(value: object, *, key: str) -> tuple[Arch, ...]:
    """The entries of ``value`` (a string separated by ``;``, ``,`` or spaces, or a list
    of numbers and strings); ``ConfigError`` naming ``key`` when malformed."""
    if isinstance(value, str):
        items: Sequence[object] = [p for p in re.split(r"[;,\s]+", value.strip()) if p]
    elif isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]  # LLAMAKIT_BACKENDS__CUDA__ARCHITECTURES=90 arrives as a number
    else:
        raise ConfigError(f"{key} must be a string such as \"90\" or \"86;90\", or a list "
                          f"such as [86, 90]; got {value!r}", key=key)
    if not items:
        raise ConfigError(f"{key} is empty; name at least one CUDA architecture, e.g. \"90\"",
                          key=key)
    found = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise ConfigError(f"{key}: {item!r} is not a CUDA architecture", key=key)
        text = str(item).strip().lower()
        if text in _REFUSED:
            raise ConfigError(
                f"{key}: {text!r} is not accepted; name the architectures (e.g. \"90\" for "
                "the H100, \"89\" for RTX 40xx, \"86\" for RTX 30xx/A10, \"80\" for the "
                "A100), so that the build key and the device check know them", key=key)
        match = _ENTRY.match(text)
        if match is None:
            raise ConfigError(f"{key}: {item!r} is not a CUDA architecture (write e.g. 90, "
                              "90-real, 80-virtual or 120a-real)", key=key)
        found.append(Arch(int(match["number"]), match["suffix"], match["kind"] or "both"))
    unique = list(dict.fromkeys(found))
    return tuple(unique)


def format_architectures(archs: Iterable[Arch]) -> str:
    """CMake's list syntax, as passed to ``CMAKE_CUDA_ARCHITECTURES``."""
    return ";".join(str(a) for a in archs)


def default_architectures(capabilities: Iterable[tuple[int, int]]) -> str:
    """The visible devices' own architectures (machine code and PTX for each), or
    ``FALLBACK`` when none is visible."""
    numbers = sorted({major * 10 + minor for major, minor in capabilities})
    return ";".join(str(n) for n in numbers) if numbers else FALLBACK


def _specific(arch: Arch) -> str:
    # ggml's CMake compiles a plain 12X as 12Xa (Blackwell's FP4 instructions): so do we.
    if arch.suffix == "" and 120 <= arch.number <= 129:
        return "a"
    return arch.suffix


def covers(archs: Iterable[Arch], capability: tuple[int, int]) -> bool:
    """Whether a build for ``archs`` has code that runs on a device of ``capability``.

    Machine code for sm_XY runs on devices of major X and minor >= Y; PTX for compute_XY
    on any device >= X.Y (compiled by the driver). ``a`` code runs only on X.Y itself,
    ``f`` code on major X, minor >= Y.
    """
    major, minor = capability
    for arch in archs:
        a_major, a_minor = arch.capability
        suffix = _specific(arch)
        if suffix == "a":
            if (major, minor) == (a_major, a_minor):
                return True
            continue
        same_family = major == a_major and minor >= a_minor
        if arch.kind in ("both", "real") and same_family:
            return True
        if suffix == "f":
            continue  # family PTX does not reach other majors
        if arch.kind in ("both", "virtual") and (major, minor) >= (a_major, a_minor):
            return True
    return False
