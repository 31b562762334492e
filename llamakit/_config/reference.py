"""The Markdown reference of every config section and key, generated from the schema."""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .errors import _format_value
from .loader import _ENV_SHORTHANDS
from .schema import _FREE_SECTION, Config, _is_class


def _type_name(annotation: Any) -> tuple[str, bool]:
    """A TOML-flavoured name of a field's type, and whether it may be unset."""
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) > 1:
            return " or ".join(_type_name(a)[0] for a in args), optional
        annotation = args[0]
    names = {bool: "boolean", int: "integer", float: "float", str: "string", Path: "path"}
    if typing.get_origin(annotation) is typing.Annotated:  # an array item's constraints
        inner, *metadata = typing.get_args(annotation)
        constraints = [m for field in metadata for m in getattr(field, "metadata", [field])]
        name = _type_name(inner)[0]
        if any(getattr(m, "min_length", None) == 1 for m in constraints):
            return f"non-empty {name}", optional
        bounds = _bounds(constraints)
        return (f"{name} {bounds}" if bounds else name), optional
    if annotation in names:
        return names[annotation], optional
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(_format_value(v) for v in typing.get_args(annotation)), \
            optional
    if origin is list:
        (item,) = typing.get_args(annotation)
        item_name = _type_name(item)[0]
        return f"array of {item_name}s" if " " not in item_name \
            else f"array of ({item_name})", optional
    if origin is dict:
        return "table", optional
    return str(annotation), optional  # pragma: no cover - every field is covered above


def _bounds(metadata: Sequence[Any]) -> str:
    """``0 < x <= 1`` style text of a field's numeric bounds."""
    found: dict[str, Any] = {}
    for item in metadata:
        for attr in ("gt", "ge", "lt", "le"):
            if getattr(item, attr, None) is not None:
                found[attr] = getattr(item, attr)
    lower = next(((attr, found[attr]) for attr in ("gt", "ge") if attr in found), None)
    upper = next(((attr, found[attr]) for attr in ("lt", "le") if attr in found), None)
    ops = {"gt": "<", "ge": "<=", "lt": "<", "le": "<="}
    if lower and upper:
        return f"{lower[1]} {ops[lower[0]]} x {ops[upper[0]]} {upper[1]}"
    if lower:
        return f"{'>' if lower[0] == 'gt' else '>='} {lower[1]}"
    if upper:
        return f"{ops[upper[0]]} {upper[1]}"
    return ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def config_schema_markdown() -> str:
    """A Markdown reference of every config section and key, generated from the schema:
    one table per section with each key's type, default, environment variable and
    description."""
    out = [
        "Settings are read, each layer overriding the one before, from: the defaults below, "
        "a TOML file (`load_config(path)` or `LLAMAKIT_CONFIG`), environment variables "
        "(`LLAMAKIT_<SECTION>__<KEY>`, values written as TOML values), and keyword arguments "
        "of `load_config()`.",
        "",
    ]
    for section, info in Config.model_fields.items():
        if info.exclude:
            continue
        model = info.annotation
        if section == _FREE_SECTION or not (_is_class(model) and issubclass(model, BaseModel)):
            out += [
                f"## `[{section}.<name>]`",
                "",
                info.description or "",
                "",
                "Environment: `LLAMAKIT_BACKENDS__<NAME>__<KEY>` sets one key.",
                "",
                "```toml",
                f"[{section}.vulkan]",
                "allow_cpu_device = true",
                "```",
                "",
            ]
            continue
        out += [
            f"## `[{section}]`",
            "",
            info.description or "",
            "",
            "| Key | Type | Default | Environment variable | Description |",
            "| --- | --- | --- | --- | --- |",
        ]
        for key, sub in model.model_fields.items():
            type_name, optional = _type_name(sub.annotation)
            bounds = _bounds(sub.metadata)
            if bounds:
                type_name += f", {bounds}"
            if optional:
                type_name += ", optional"
            default = sub.get_default(call_default_factory=True)
            default_text = "unset" if default is None else f"`{_format_value(default)}`"
            env_name = f"`LLAMAKIT_{section.upper()}__{key.upper()}`"
            for short, target in _ENV_SHORTHANDS.items():
                if target == (section, key):
                    env_name += f" or `LLAMAKIT_{short}`"
            out.append(
                f"| `{key}` | {_cell(type_name)} | {_cell(default_text)} | {env_name} "
                f"| {_cell(sub.description or '')} |"
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"
