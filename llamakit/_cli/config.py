"""``llamakit config show`` and ``llamakit config validate FILE``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .._config import Config, load_config
from .._config.errors import _format_value
from .._config.schema import _SECTIONS
from ._common import cli_config, write
from ._options import add_config_flags

__all__ = ["register"]


def _plain(value: Any) -> Any:
    """A value as JSON data (paths as strings)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _entries(config: Config) -> list[tuple[str, str, Any, str]]:
    """``(section, key, value, origin)`` of every setting, ``[backends.*]`` included."""
    found = []
    for section in _SECTIONS:
        values = getattr(config, section)
        for key in type(values).model_fields:
            found.append((section, key, getattr(values, key),
                          config.origin(f"{section}.{key}")))
    for name, table in sorted(config.backends.items()):
        for key, value in sorted(table.items()):
            found.append((f"backends.{name}", key, value,
                          config.origin(f"backends.{name}.{key}")))
    return found


def _cmd_show(args: argparse.Namespace) -> int:
    config, _ = cli_config(args)
    entries = _entries(config)
    if args.changed:
        entries = [e for e in entries if e[3] != "default"]
    if args.json:
        data = {"source": None if config.source is None else str(config.source),
                "settings": [{"key": f"{s}.{k}", "value": _plain(v), "origin": o}
                             for s, k, v, o in entries]}
        write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return 0
    write(f"# config file: {config.source or 'none'} (--config or LLAMAKIT_CONFIG)\n")
    section = None
    for name, key, value, origin in entries:
        if name != section:
            write(f"{'' if section is None else chr(10)}[{name}]\n")
            section = name
        text = f"{key} = {_format_value(value, limit=200)}"
        write(f"{text:<40} # {origin}\n" if len(text) < 40 else f"{text}  # {origin}\n")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    # The file alone: the environment and --config play no part in what it says.
    for path in args.files:
        config = load_config(path, env={})
        write(f"{config.source}: valid\n")
    return 0


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", parents=parents, help="show or check the configuration",
                       description="Show the effective configuration, or validate files.")
    actions = p.add_subparsers(dest="config_command", required=True, metavar="ACTION",
                               parser_class=type(p))
    show = actions.add_parser(
        "show", parents=parents, help="the effective settings and where each came from",
        description="Print every setting with its value and origin: default, the config file "
        "(--config or LLAMAKIT_CONFIG), an environment variable or a command-line flag. "
        "Any setting's flag may be given to see its effect.")
    show.add_argument("--changed", action="store_true", help="only settings that are not "
                      "defaults")
    show.add_argument("--json", action="store_true", help="print JSON")
    add_config_flags(show, [name for name in _SECTIONS if name != "ui"])
    show.set_defaults(func=_cmd_show)
    check = actions.add_parser(
        "validate", parents=parents, help="check config files against the schema",
        description="Check each TOML FILE on its own (the environment is ignored); print "
        "'FILE: valid', or the first file's problems with exit status 1.")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(func=_cmd_validate)
