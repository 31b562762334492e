"""Command-line flags derived from the config schema, and the config they build.

Every key of the schema's sections can be a flag: ``context.n_ctx`` is ``--n-ctx``,
``sampling.top_p`` is ``--top-p``, booleans get a ``--no-`` form, lists of strings repeat
(``--stop A --stop B``), lists of numbers are comma-separated (``--tensor-split 3,1``) and
tables are JSON (``--logit-bias '{"15043": 2}'``). A flag's value is a layer of the config
above the file and the environment, so it is validated by the schema and its errors and
``llamakit config show`` name the flag. A few keys get other names (``_RENAMED``), the
ones a command does not use are left out (``_SKIPPED`` and each command's sections).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn

from pydantic import BaseModel

from .._config.loader import _load
from .._config.provenance import _Origin
from .._config.schema import _SECTIONS, Config, _is_class

__all__ = ["FLAG_PREFIX", "LlamakitParser", "add_config_flags", "add_global_options",
           "config_from_args", "flag_for", "flag_values", "read_stdin_lines", "schema_flags",
           "split_model_argument"]

#: argparse ``dest`` of a config flag: ``cfg:context.n_ctx``.
FLAG_PREFIX = "cfg:"

# Keys whose flag is not --<key-with-dashes> (clashes, or a clearer name on a command line).
_RENAMED: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("backend", "name"): ("--backend",),
    ("model", "path"): ("-m", "--model"),
    ("context", "seed"): ("--context-seed",),  # --seed is the sampler's, as in llama.cpp
    ("chat", "template"): ("--chat-template",),
    ("chat", "max_output_chars"): ("--chat-max-output-chars",),
    ("chat", "max_render_seconds"): ("--chat-max-render-seconds",),
    ("plugins", "disable"): ("--disable-plugin",),
    ("engine", "n_ctx"): ("--engine-n-ctx",),  # --n-ctx is the context's
}
# Keys that make no sense as a flag of any command (the commands set them themselves).
_SKIPPED = frozenset({("model", "vocab_only"), ("context", "embeddings")})
# Options every command takes (the config file, tracebacks) and the config keys among them.
GLOBAL_KEYS = (("backend", "name"), ("ui", "progress"))


class LlamakitParser(argparse.ArgumentParser):
    """argparse with llamakit's error format: one line, ``llamakit: error: ...``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"llamakit: error: {message} (see '{self.prog} --help')\n")


def flag_for(section: str, key: str) -> tuple[str, ...]:
    """The option strings of the config key ``section.key``."""
    return _RENAMED.get((section, key), ("--" + key.replace("_", "-"),))


def _split(annotation: Any) -> tuple[list[Any], bool]:
    """The non-None members of a field's type, and whether None is one."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = list(typing.get_args(annotation))
        return [a for a in args if a is not type(None)], type(None) in args
    return [annotation], False


def _json_table(text: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _list_of(item: Callable[[str], Any], name: str) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
        try:
            return [item(p) for p in parts]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {name}s, got {text!r}") from None
    parse.__name__ = f"list of {name}s"
    return parse


def _number(kind: type[Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid {kind.__name__} value: {text!r}") from None
    parse.__name__ = kind.__name__
    return parse


def _argument(annotation: Any) -> dict[str, Any]:
    """argparse keywords (type, action, choices, metavar) for a field's type."""
    members, _ = _split(annotation)
    first = members[0]
    if typing.get_origin(first) is Literal:
        values = typing.get_args(first)
        kind = type(values[0])
        return {"type": _number(kind) if kind is not str else str, "choices": list(values)}
    if first is bool:
        return {"action": argparse.BooleanOptionalAction}
    if first in (int, float):
        return {"type": _number(first), "metavar": first.__name__.upper()}
    if typing.get_origin(first) is list:
        (item,) = typing.get_args(first)
        if typing.get_origin(item) is typing.Annotated:  # constraints: the schema checks them
            item = typing.get_args(item)[0]
        if item is str:
            return {"action": "append", "metavar": "TEXT"}
        if item in (int, float):
            return {"type": _list_of(item, item.__name__),
                    "metavar": f"{item.__name__.upper()},..."}
        return {"type": _list_of(str, "name"), "metavar": "NAME,..."}  # samplers
    if any(typing.get_origin(m) is dict for m in members):
        if str in members:  # json_schema: JSON text is what the key takes as a string
            return {"metavar": "JSON"}
        return {"type": _json_table, "metavar": "JSON"}
    if _is_class(first) and issubclass(first, Path):
        return {"metavar": "PATH"}
    return {"metavar": "TEXT"}


def schema_flags(sections: Iterable[str], *, exclude: Iterable[tuple[str, str]] = ()
                 ) -> list[tuple[str, str, Any]]:
    """``(section, key, field)`` of every flag-able key of ``sections``, in schema order."""
    skipped = _SKIPPED | set(exclude) | set(GLOBAL_KEYS)
    found = []
    for section in sections:
        model: type[BaseModel] = _SECTIONS[section]
        for key, field in model.model_fields.items():
            if (section, key) not in skipped:
                found.append((section, key, field))
    return found


def _help(field: Any) -> str:
    text = (field.description or "").replace("%", "%%")
    default = field.get_default(call_default_factory=True)
    if default not in (None, [], {}) and not isinstance(default, bool):
        text += f" (default: {default})"
    return text


def add_config_flags(parser: argparse.ArgumentParser, sections: Iterable[str], *,
                     exclude: Iterable[tuple[str, str]] = (), title: str | None = None,
                     only: Iterable[tuple[str, str]] | None = None) -> None:
    """Add one flag per key of ``sections`` (see the module), or only the keys ``only``."""
    group = parser.add_argument_group(title or "settings (config keys; see 'llamakit "
                                      "config show')")
    wanted = None if only is None else set(only)
    for section, key, field in schema_flags(sections, exclude=exclude):
        if wanted is not None and (section, key) not in wanted:
            continue
        group.add_argument(*flag_for(section, key), dest=f"{FLAG_PREFIX}{section}.{key}",
                           default=argparse.SUPPRESS, help=f"[{section}] {key}: {_help(field)}",
                           **_argument(field.annotation))


def add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--config``, ``--debug``, ``--backend`` and ``--progress``: on the top parser and on
    every command (so they may come before or after the command's name). Defaults are
    suppressed so that a command's parser does not overwrite what the top parser read."""
    group = parser.add_argument_group("global options")
    group.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                       help="a llamakit TOML config file (default: $LLAMAKIT_CONFIG); flags "
                       "override its keys")
    group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks and debug logs")
    for section, key in GLOBAL_KEYS:
        field = _SECTIONS[section].model_fields[key]
        group.add_argument(*flag_for(section, key), dest=f"{FLAG_PREFIX}{section}.{key}",
                           default=argparse.SUPPRESS, help=_help(field),
                           **_argument(field.annotation))
    del top


def flag_values(args: argparse.Namespace) -> dict[tuple[str, str], Any]:
    """The config flags given on the command line: ``{(section, key): value}``."""
    found = {}
    for dest, value in vars(args).items():
        if dest.startswith(FLAG_PREFIX):
            section, key = dest[len(FLAG_PREFIX):].split(".", 1)
            found[(section, key)] = value
    return found


def config_from_args(args: argparse.Namespace, *,
                     extra: Mapping[tuple[str, str], tuple[str, Any]] | None = None,
                     env: Mapping[str, str] | None = None) -> Config:
    """The config of ``--config`` (else ``$LLAMAKIT_CONFIG``), the environment and the
    flags, each flag its own layer so messages name it. ``extra`` adds
    ``{(section, key): (flag, value)}`` layers, e.g. a positional MODEL argument."""
    layers: list[tuple[_Origin, dict[str, Any]]] = []
    items: list[tuple[tuple[str, str], str, Any]] = [
        (key, flag_for(*key)[-1], value) for key, value in flag_values(args).items()]
    items += [(key, flag, value) for key, (flag, value) in (extra or {}).items()]
    for (section, key), flag, value in items:
        if section == "model" and key == "path" and isinstance(value, str):
            value = Path(value)  # a path on the command line is relative to the cwd
        layers.append((_Origin("flag", flag), {section: {key: value}}))
    path = getattr(args, "config", None)
    return _load(path, os.environ if env is None else env, layers)


def read_stdin_lines() -> list[str]:
    """Non-empty lines of stdin, without their line ends."""
    return [line.rstrip("\r\n") for line in sys.stdin if line.strip()]


def split_model_argument(words: Sequence[str], *, model_flag: bool,
                         config_has_model: bool) -> tuple[str | None, list[str]]:
    """Split ``[MODEL] TEXT...`` positionals. The first word is the model unless ``-m``
    names one, or the config (or ``$LLAMAKIT_MODEL``) does and the word does not end in
    ``.gguf``."""
    values = list(words)
    if not values or model_flag:
        return None, values
    if config_has_model and not values[0].lower().endswith(".gguf"):
        return None, values
    return values[0], values[1:]
