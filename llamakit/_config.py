"""llamakit's configuration: the validated schema, the layered loader and its reference.

Settings come in four layers, each overriding the one before::

    defaults  <  TOML file  <  environment (LLAMAKIT_*)  <  keyword arguments of load_config()

A config file has one table per section of :class:`Config`::

    [backend]
    name = "vulkan"

    [model]
    path = "models/tiny.gguf"    # relative paths are relative to this file's folder
    n_gpu_layers = -1

    [context]
    n_ctx = 2048

    [sampling]
    temperature = 0.2
    stop = ["</s>"]

    [backends.vulkan]            # free-form; the vulkan backend validates it
    allow_cpu_device = true

Every mistake (unknown key, wrong type, value out of range, unreadable file) is one
:class:`~llamakit._errors.ConfigError` whose message names the dotted key, the value, the
reason and where the value came from.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import sys
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeGuard

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails

from ._errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "BackendConfig",
    "Config",
    "ContextConfig",
    "ModelConfig",
    "PluginsConfig",
    "SamplingConfig",
    "config_error_from_validation",
    "config_schema_markdown",
    "load_config",
]

#: The largest seed llama.cpp accepts as a fixed seed; 0xFFFFFFFF means "random" there.
_MAX_SEED = 2**32 - 2

def _expand_user(path: Path) -> Path:
    """``path`` with a leading ``~`` expanded; as it is when there is no home to expand to."""
    try:
        return path.expanduser()
    except RuntimeError:
        return path


# Every section is strict: a TOML string is not an integer, 1 is not a boolean. Floats
# still accept integers (``temperature = 0``) and paths accept strings.
_STRICT = ConfigDict(extra="forbid", strict=True)


# --------------------------------------------------------------------------------------
# The schema
# --------------------------------------------------------------------------------------


class BackendConfig(BaseModel):
    """Which compute backend runs the model."""

    model_config = _STRICT

    name: str = Field(
        default="auto",
        min_length=1,
        description='"auto", "cpu", "vulkan", or any installed backend plugin\'s name. '
        '"auto" picks a backend that works on this machine.',
    )


class ModelConfig(BaseModel):
    """The GGUF model file and how it is loaded."""

    model_config = _STRICT

    path: Path | None = Field(
        default=None,
        strict=False,
        description="The GGUF model file. A relative path in a config file is relative to "
        "that file's folder; `~` is expanded.",
    )
    n_gpu_layers: int = Field(
        default=0,
        ge=-1,
        description="How many layers to offload to the GPU: 0 = none, -1 = all.",
    )
    use_mmap: bool = Field(
        default=True, description="Map the model file into memory instead of reading it."
    )
    use_mlock: bool = Field(
        default=False,
        description="Lock the model's memory so the operating system cannot swap it out.",
    )
    vocab_only: bool = Field(
        default=False, description="Load only the vocabulary (for tokenizing), no weights."
    )

    @field_validator("path", mode="before")
    @classmethod
    def _path_not_empty(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("should be a file path, not an empty string")
        return value

    @field_validator("path")
    @classmethod
    def _expand_path(cls, value: Path | None) -> Path | None:
        return None if value is None else _expand_user(value)


class ContextConfig(BaseModel):
    """The inference context: its length, batching and threads."""

    model_config = _STRICT

    n_ctx: int | None = Field(
        default=None,
        gt=0,
        description="Context length in tokens. Unset: the model's training context length, "
        "at most 4096.",
    )
    n_batch: int = Field(
        default=512, gt=0, description="Most tokens submitted in one decode call (logical batch)."
    )
    n_ubatch: int = Field(
        default=512, gt=0, description="Most tokens computed at once (physical micro-batch)."
    )
    n_threads: int | None = Field(
        default=None,
        gt=0,
        description="CPU threads used while generating. Unset: chosen automatically.",
    )
    n_threads_batch: int | None = Field(
        default=None,
        gt=0,
        description="CPU threads used while processing prompts. Unset: chosen automatically.",
    )
    embeddings: bool = Field(
        default=False, description="Extract embeddings (for embedding models)."
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=_MAX_SEED,
        description="Random seed of the context. Unset: a random seed.",
    )


class SamplingConfig(BaseModel):
    """How the next token is chosen, and when generation stops."""

    model_config = _STRICT

    max_new_tokens: int = Field(
        default=256, ge=0, description="Most tokens generated per call."
    )
    temperature: float = Field(
        default=0.8,
        ge=0,
        allow_inf_nan=False,
        description="Sampling temperature; 0 = greedy (always the most likely token).",
    )
    top_k: int = Field(
        default=40, ge=0, description="Keep only the k most likely tokens; 0 = no limit."
    )
    top_p: float = Field(
        default=0.95,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="Nucleus sampling: keep the most likely tokens whose probabilities add "
        "up to p; 1 = off.",
    )
    min_p: float = Field(
        default=0.05,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Drop tokens less likely than min_p times the most likely one; 0 = off.",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=_MAX_SEED,
        description="Random seed of the sampler. Unset: a random seed.",
    )
    stop: list[str] = Field(
        default_factory=list,
        description="Generation stops when the output contains any of these strings.",
    )


class PluginsConfig(BaseModel):
    """Which installed llamakit plugins are not loaded."""

    model_config = _STRICT

    disable: list[str] = Field(
        default_factory=list, description="Names of installed plugins not to load."
    )


@dataclass(frozen=True)
class _Origin:
    """Where a value came from: a config file, an environment variable or an argument."""

    kind: Literal["file", "env", "argument"]
    name: str  # the file's path, the variable's name or the keyword argument's name

    @property
    def rank(self) -> int:
        return ("file", "env", "argument").index(self.kind)

    @property
    def file(self) -> Path | None:
        return Path(self.name) if self.kind == "file" else None

    def describe(self) -> str:
        if self.kind == "file":
            return f"config file {self.name}"
        if self.kind == "env":
            return f"environment variable {self.name}"
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


class Config(BaseModel):
    """All of llamakit's settings; :func:`load_config` builds one from files and environment."""

    model_config = _STRICT

    backend: BackendConfig = Field(
        default_factory=BackendConfig, description=BackendConfig.__doc__ or ""
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description=ModelConfig.__doc__ or "")
    context: ContextConfig = Field(
        default_factory=ContextConfig, description=ContextConfig.__doc__ or ""
    )
    sampling: SamplingConfig = Field(
        default_factory=SamplingConfig, description=SamplingConfig.__doc__ or ""
    )
    plugins: PluginsConfig = Field(
        default_factory=PluginsConfig, description=PluginsConfig.__doc__ or ""
    )
    backends: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Settings of individual backends, one table per backend name "
        "(e.g. `[backends.vulkan]`); each backend validates its own table.",
    )
    source: Path | None = Field(
        default=None,
        strict=False,
        exclude=True,
        description="The TOML file these settings were read from, if any.",
    )

    _provenance: _Provenance = PrivateAttr(default_factory=_Provenance)

    def origin(self, key: str) -> str:
        """Where the value of the dotted ``key`` (e.g. ``"context.n_ctx"``) came from:
        ``"default"``, ``"config file PATH"``, ``"environment variable NAME"`` or
        ``"keyword argument NAME="``."""
        found = self._provenance.lookup(tuple(key.split(".")), tables=False)
        return found.describe() if found is not None else "default"


_SECTIONS: dict[str, type[BaseModel]] = {
    "backend": BackendConfig,
    "model": ModelConfig,
    "context": ContextConfig,
    "sampling": SamplingConfig,
    "plugins": PluginsConfig,
}
# The free-form table of tables.
_FREE_SECTION = "backends"
_SECTION_NAMES = [name for name in Config.model_fields if name != "source"]


# --------------------------------------------------------------------------------------
# Error messages
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------

_ENV_PREFIX = "LLAMAKIT_"
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
        with path.open("rb") as f:
            data: dict[str, Any] = tomllib.load(f)
        return data
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


def _is_class(annotation: Any) -> TypeGuard[type[Any]]:
    """Whether an annotation is a plain class (``list[str]`` passes isinstance(type) on 3.10)."""
    return isinstance(annotation, type) and typing.get_origin(annotation) is None


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
    environ: Mapping[str, str] = os.environ if env is None else env
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

    for name, value in overrides.items():
        if value is None:
            continue
        _merge(data, {name: _override_layer(name, value)}, _Origin("argument", name), provenance)

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


# --------------------------------------------------------------------------------------
# Reference documentation
# --------------------------------------------------------------------------------------


def _type_name(annotation: Any) -> tuple[str, bool]:
    """A TOML-flavoured name of a field's type, and whether it may be unset."""
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0] if len(args) == 1 else annotation
    names = {bool: "boolean", int: "integer", float: "float", str: "string", Path: "path"}
    if annotation in names:
        return names[annotation], optional
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return f"array of {_type_name(item)[0]}s", optional
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
