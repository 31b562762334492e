"""Keyword arguments checked against the config schema, the one source of every parameter.

``load_model``, ``Model.new_context`` and ``generate``/``stream`` take the keys of
``[model]``, ``[context]`` and ``[sampling]`` as keyword arguments. Their types, ranges and
defaults are those of the schema's fields (``schema.py``): each keyword is checked by a
cached pydantic adapter built from its field, so a keyword and a TOML key accept and refuse
the same values, and an error names the key.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from .._errors import ConfigError, LlamakitError

__all__ = ["check_field", "check_fields", "field_default"]

# As strict as the sections themselves (schema._STRICT); fields may relax it (paths).
_STRICT = ConfigDict(strict=True)


@functools.cache
def _adapter(section: type[BaseModel], name: str) -> TypeAdapter[Any]:
    field = section.model_fields[name]
    annotated: Any = Annotated[field.annotation, field]  # a type built at run time
    return TypeAdapter(annotated, config=_STRICT)


def _is_list(section: type[BaseModel], name: str) -> bool:
    annotation = section.model_fields[name].annotation
    return any(typing.get_origin(arm) is list
               for arm in (typing.get_args(annotation) or (annotation,))) \
        or typing.get_origin(annotation) is list


def check_field(section: type[BaseModel], name: str, value: Any, *,
                error: type[Exception] = ConfigError) -> Any:
    """``value`` of the keyword ``name``, validated by the field of that name in
    ``section``; a refusal is ``error`` naming the key, the value and the reason.

    A tuple is taken for a list (Python callers pass either; TOML has only arrays).
    """
    if isinstance(value, tuple) and _is_list(section, name):
        value = list(value)
    try:
        return _adapter(section, name).validate_python(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "".join(f"[{p}]" for p in first["loc"])
        message = f"{name}{where}={value!r}: {first['msg']}"
        if issubclass(error, ConfigError):
            raise error(message, key=name) from None
        refusal = error(message)
        if isinstance(refusal, LlamakitError):
            refusal.key = name
        raise refusal from None


def check_fields(section: type[BaseModel], values: Mapping[str, Any], *,
                 error: type[Exception] = ConfigError) -> dict[str, Any]:
    """Every entry of ``values`` checked with ``check_field``."""
    return {name: check_field(section, name, value, error=error)
            for name, value in values.items()}


def field_default(section: type[BaseModel], name: str) -> Any:
    """The schema's default of ``section.name``."""
    return section.model_fields[name].get_default(call_default_factory=True)
