"""Translation of pydantic ``ValidationError``s into llamakit's ``ConfigError`` messages."""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .._errors import ConfigError
from .provenance import _Origin, _Provenance
from .schema import _SECTION_NAMES, _SECTIONS, Config

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _dotted(loc: Iterable[str | int]) -> str:
    """``("sampling", "stop", 1)`` -> ``sampling.stop[1]``, quoting keys TOML would quote."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _BARE_KEY.match(part) else json.dumps(part)
            out = f"{out}.{text}" if out else text
    return out


def _format_value(value: object, limit: int = 80) -> str:
    """A value as it would be written in TOML, shortened to ``limit`` characters."""

    def fmt(v: object) -> str:
        if v is None:
            return "(unset)"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            if math.isnan(v):
                return "nan"
            if math.isinf(v):
                return "inf" if v > 0 else "-inf"
            return repr(v)
        if isinstance(v, int):
            return str(v)
        if isinstance(v, (str, os.PathLike)):
            return json.dumps(os.fspath(v), ensure_ascii=False)
        if isinstance(v, Mapping):
            items = ", ".join(f"{_dotted([str(k)])} = {fmt(x)}" for k, x in v.items())
            return f"{{ {items} }}" if items else "{}"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return repr(v)

    text = fmt(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _keys_of(loc: tuple[str | int, ...]) -> list[str] | None:
    """The keys the table at ``loc`` accepts, where the schema knows them."""
    if loc == ():
        return list(_SECTION_NAMES)
    if len(loc) == 1 and isinstance(loc[0], str) and loc[0] in _SECTIONS:
        return list(_SECTIONS[loc[0]].model_fields)
    return None


def _unknown_key_reason(loc: tuple[str | int, ...], value: object) -> str:
    parent, name = loc[:-1], loc[-1]
    known = _keys_of(parent)
    if known is None:
        return "unknown key"
    reason = "unknown section" if not parent and isinstance(value, Mapping) else "unknown key"
    close = difflib.get_close_matches(str(name), known, n=1)
    if close:
        reason += f"; did you mean {_dotted((*parent, close[0]))!r}?"
    where = f"[{_dotted(parent)}] has" if parent else "the sections are"
    return f"{reason} ({where}: {', '.join(known)})"


def _reason(error: ErrorDetails, loc: tuple[str | int, ...], origin: _Origin | None) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return _unknown_key_reason(loc, error.get("input"))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "should be a table"
    msg = error["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    msg = re.sub(r"^Input should", "should", msg)
    if kind == "list_type" and origin is not None and origin.kind == "env":
        msg += ' (write a TOML array, e.g. ["a", "b"])'
    return msg


def _problem(
    loc: tuple[str | int, ...], value: object, origin: _Origin | None, reason: str
) -> str:
    where = f" ({origin.describe()})" if origin is not None else ""
    return f"{_dotted(loc)} = {_format_value(value)}{where}: {reason}"


_Problem = tuple[tuple[str | int, ...], str, _Origin | None]


def _error(problems: list[_Problem]) -> ConfigError:
    """One ConfigError for ``(loc, text, origin)`` problems; the first sets key and path."""
    loc, _, origin = problems[0]
    if len(problems) == 1:
        message = f"invalid configuration: {problems[0][1]}"
    else:
        lines = "\n".join(f"  - {text}" for _, text, _ in problems)
        message = f"invalid configuration ({len(problems)} problems):\n{lines}"
    return ConfigError(message, path=origin.file if origin else None, key=_dotted(loc))


def _translate(
    error: ValidationError, prefix: Sequence[str], provenance: _Provenance | None
) -> ConfigError:
    """The one place a pydantic ``ValidationError`` becomes a ``ConfigError``."""
    problems: list[_Problem] = []
    for details in error.errors(include_url=False):
        loc = (*prefix, *details["loc"])
        origin = provenance.lookup(loc) if provenance is not None else None
        reason = _reason(details, loc, origin)
        if details["type"] == "missing":
            where = f" ({origin.describe()})" if origin is not None else ""
            text = f"{_dotted(loc)}{where}: required key is missing"
        else:
            text = _problem(loc, details.get("input"), origin, reason)
        problems.append((loc, text, origin))
    return _error(problems)


def config_error_from_validation(
    error: ValidationError, *, prefix: Sequence[str] = (), config: Config | None = None
) -> ConfigError:
    """Turn a pydantic ``ValidationError`` into a :class:`ConfigError` in llamakit's format.

    For code that validates part of a loaded config with its own model, e.g. a backend
    validating ``config.backends["vulkan"]``: pass ``prefix=("backends", "vulkan")`` so
    the keys read ``backends.vulkan.KEY``, and ``config`` so that the message says which
    file or environment variable the value came from.
    """
    return _translate(error, prefix, config._provenance if config is not None else None)
