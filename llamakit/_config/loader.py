"""The layered loader: defaults < TOML file < environment < keyword arguments."""

from __future__ import annotations

import difflib
import os
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .._errors import ConfigError
from .._files import NotRegularFileError, read_regular_file
from .errors import _error, _problem, _translate, _unknown_key_reason
from .provenance import _Origin, _Provenance
from .schema import _FREE_SECTION, _SECTION_NAMES, _SECTIONS, Config, _expand_user, _is_class

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

_ENV_PREFIX = "LLAMAKIT_"
#: Config files are short; a bigger one is a mistake (a model file, a device) to refuse.
_MAX_CONFIG_BYTES = 16 * 2**20
_ENV_CONFIG = "LLAMAKIT_CONFIG"
_ENV_SHORTHANDS: dict[str, tuple[str, str]] = {
    "BACKEND": ("backend", "name"),
    "MODEL": ("model", "path"),
}


def _read_toml(path: Path, via: str | None) -> dict[str, Any]:
    named_by = f" (named by environment variable {via})" if via else ""
    if not path.exists():
        raise ConfigError(f"config file {path}{named_by} does not exist", path=path)
    if path.is_dir():
        raise ConfigError(
            f"config file {path}{named_by} is a directory, not a TOML file", path=path
        )
    try:
        # Non-blocking and bounded: a FIFO would block open() forever, /dev/zero never ends.
        raw = read_regular_file(path, _MAX_CONFIG_BYTES)
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
        return data
    except NotRegularFileError as exc:
        raise ConfigError(f"config file {path}{named_by} cannot be used: {exc} (a config file "
                          f"is a regular TOML file of at most {_MAX_CONFIG_BYTES} bytes)",
                          path=path) from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests tables or arrays too deeply for Python's "
                          "TOML parser", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        text = str(exc)
        line = getattr(exc, "lineno", None)
        if line is not None and f"line {line}" not in text:
            text += f" (at line {line})"
        raise ConfigError(f"config file {path} is not valid TOML: {text}", path=path) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text: {exc}", path=path) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}{named_by}: {exc.strerror or exc}", path=path
        ) from None


def _resolve_model_path(data: dict[str, Any], folder: Path) -> None:
    """Make a relative ``model.path`` of a config file relative to the file's folder."""
    model = data.get("model")
    if not isinstance(model, dict):
        return
    raw = model.get("path")
    if not isinstance(raw, str) or not raw.strip():
        return  # validation reports it
    path = _expand_user(Path(raw))
    model["path"] = path if path.is_absolute() else folder / path


def _is_text_field(section: str, key: str) -> bool:
    """Whether ``section.key`` holds a string or path (taken from the environment as is)."""
    model = _SECTIONS.get(section)
    if model is None or key not in model.model_fields:
        return False
    annotation = model.model_fields[key].annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
    else:
        args = [annotation]
    return all(_is_class(a) and issubclass(a, (str, Path)) for a in args)


def _env_value(key: tuple[str, ...], raw: str) -> Any:
    """An environment value: the text itself for strings and paths, else parsed as a TOML
    value when it parses as one (``0``, ``true``, ``["a", "b"]``), else the text."""
    if len(key) == 2 and _is_text_field(*key):
        return raw
    try:
        parsed = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError:
        return raw
    return parsed["v"] if parsed.keys() == {"v"} else raw


def _env_key(name: str) -> tuple[str, ...] | None:
    """The config key an environment variable sets, None for variables that aren't settings."""
    rest = name[len(_ENV_PREFIX) :]
    if rest in _ENV_SHORTHANDS:
        return _ENV_SHORTHANDS[rest]
    if "__" not in rest:
        return None  # LLAMAKIT_CACHE_DIR and friends belong to other parts of llamakit
    parts = [p.lower() for p in rest.split("__")]
    section = parts[0]
    if not all(parts):
        raise ConfigError(
            f"malformed environment variable {name}: write LLAMAKIT_<SECTION>__<KEY>, "
            "e.g. LLAMAKIT_CONTEXT__N_CTX",
            key=".".join(parts),
        )
    if section not in _SECTION_NAMES:
        close = difflib.get_close_matches(section, _SECTION_NAMES, n=1)
        hint = f"; did you mean LLAMAKIT_{close[0].upper()}__...?" if close else ""
        raise ConfigError(
            f"unknown environment variable {name}: there is no config section "
            f"[{section}]{hint} (the sections are: {', '.join(_SECTION_NAMES)})",
            key=section,
        )
    if section == _FREE_SECTION:
        if len(parts) not in (2, 3):
            raise ConfigError(
                f"malformed environment variable {name}: write "
                "LLAMAKIT_BACKENDS__<BACKEND>__<KEY> or LLAMAKIT_BACKENDS__<BACKEND>",
                key=".".join(parts),
            )
        return tuple(parts)
    known = list(_SECTIONS[section].model_fields)
    if len(parts) != 2 or parts[1] not in known:
        wanted = "__".join(parts[1:])
        close = difflib.get_close_matches(wanted, known, n=1)
        hint = f"; did you mean LLAMAKIT_{section.upper()}__{close[0].upper()}?" if close else ""
        raise ConfigError(
            f"unknown environment variable {name}: [{section}] has no key "
            f"{wanted!r}{hint} ([{section}] has: {', '.join(known)})",
            key=f"{section}.{'.'.join(parts[1:])}",
        )
    return (parts[0], parts[1])


def _env_layers(environ: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """``(variable, nested value)`` for every settings variable; shorthands first so that
    the ``__`` spelling of the same key wins over them."""
    found: list[tuple[bool, str, dict[str, Any]]] = []
    for name in sorted(environ):
        if not name.startswith(_ENV_PREFIX) or name == _ENV_CONFIG:
            continue
        key = _env_key(name)
        raw = environ[name]
        if key is None or raw == "":  # an empty variable counts as unset
            continue
        value: Any = _env_value(key, raw)
        for part in reversed(key):
            value = {part: value}
        found.append((name[len(_ENV_PREFIX) :] not in _ENV_SHORTHANDS, name, value))
    found.sort(key=lambda item: item[0])  # stable: shorthands, then the rest by name
    return [(name, value) for _, name, value in found]


def _merge(
    target: dict[str, Any],
    data: Mapping[str, Any],
    origin: _Origin,
    provenance: _Provenance,
    prefix: tuple[str, ...] = (),
) -> None:
    """Deep-merge ``data`` into ``target`` (copying, never aliasing, its tables)."""
    for key, value in data.items():
        path = (*prefix, key)
        if isinstance(value, Mapping):
            current = target.get(key)
            if not isinstance(current, dict):
                provenance.forget(path)
                current = target[key] = {}
            provenance.values.pop(path, None)
            provenance.empty_tables.discard(path)
            _merge(current, value, origin, provenance, path)
            if not current:
                provenance.values[path] = origin
                provenance.empty_tables.add(path)
        else:
            provenance.forget(path)
            target[key] = list(value) if isinstance(value, list) else value
            provenance.values[path] = origin


def _override_layer(name: str, value: Any) -> Any:
    """The table a keyword argument of :func:`load_config` stands for."""
    if name == "backend" and isinstance(value, str):
        return {"name": value}
    if name == "model" and isinstance(value, (str, os.PathLike)):
        return {"path": value}
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=True)
    return value


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """Build a :class:`Config` from defaults, a TOML file, the environment and arguments.

    Later layers override earlier ones key by key::

        defaults < TOML file < environment < keyword arguments

    ``path``
        The TOML file; when None, the file named by ``LLAMAKIT_CONFIG`` if that is set,
        else no file. A relative ``model.path`` in the file is taken relative to the
        file's folder. The file must exist.
    ``env``
        The environment to read (default ``os.environ``):

        - ``LLAMAKIT_<SECTION>__<KEY>`` sets ``<section>.<key>``, e.g.
          ``LLAMAKIT_CONTEXT__N_CTX=2048``; ``LLAMAKIT_BACKENDS__<NAME>__<KEY>`` sets a key
          of ``[backends.<name>]``. An unknown section or key is an error.
        - ``LLAMAKIT_BACKEND`` is short for ``LLAMAKIT_BACKEND__NAME`` and ``LLAMAKIT_MODEL``
          for ``LLAMAKIT_MODEL__PATH``; the long spelling wins when both are set.
        - Values are parsed as TOML values when they parse (``0``, ``true``,
          ``["a", "b"]``), else taken as text; string and path keys always take the text
          as is. Empty variables are ignored.
        - Other ``LLAMAKIT_*`` variables without ``__`` (``LLAMAKIT_CACHE_DIR``, ...) belong
          to other parts of llamakit and are ignored here.
    ``**overrides``
        One keyword argument per section, holding a dict of that section's keys (nested
        dicts, not dotted keys): ``load_config(context={"n_ctx": 64},
        sampling={"temperature": 0})``, ``backends={"vulkan": {"allow_cpu_device": True}}``.
        A section model instance (``context=ContextConfig(n_ctx=64)``) stands for the keys
        set on it. Shorthands: ``backend="cpu"`` and ``model="path/to.gguf"``. An argument
        that is None is ignored, so a CLI can pass its options through unconditionally.

    Raises :class:`ConfigError` for a missing or unreadable file, invalid TOML (naming the
    file and line), an unknown ``LLAMAKIT_<SECTION>__<KEY>`` variable, and any unknown key,
    wrong type or out-of-range value (naming the dotted key, the value, the reason, and
    the file, variable or argument it came from).
    """
    layers = [(_Origin("argument", name), {name: _override_layer(name, value)})
              for name, value in overrides.items() if value is not None]
    return _load(path, os.environ if env is None else env, layers)


def _load(path: str | os.PathLike[str] | None, environ: Mapping[str, str],
          layers: Sequence[tuple[_Origin, Mapping[str, Any]]]) -> Config:
    """``load_config`` with the top layers given as ``(origin, nested tables)``; the
    command line passes its flags here so that messages name them (``--top-p``)."""
    provenance = _Provenance()
    data: dict[str, Any] = {}

    via = None
    if path is None and environ.get(_ENV_CONFIG):
        path, via = environ[_ENV_CONFIG], _ENV_CONFIG
    source: Path | None = None
    if path is not None:
        source = _expand_user(Path(os.fspath(path))).absolute()
        file_data = _read_toml(source, via)
        _resolve_model_path(file_data, source.parent)
        _merge(data, file_data, _Origin("file", str(source)), provenance)

    for name, value in _env_layers(environ):
        _merge(data, value, _Origin("env", name), provenance)

    for layer_origin, layer in layers:
        _merge(data, layer, layer_origin, provenance)

    if "source" in data:  # a field of Config, but not a setting
        loc: tuple[str | int, ...] = ("source",)
        origin = provenance.lookup(loc)
        text = _problem(loc, data["source"], origin, _unknown_key_reason(loc, data["source"]))
        raise _error([(loc, text, origin)])
    data["source"] = source
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise _translate(exc, (), provenance) from None
    config._provenance = provenance
    return config
