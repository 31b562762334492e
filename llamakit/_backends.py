"""Which backends exist, which can run here, and choosing one (``auto`` or by name)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._backend_spec import BackendSpec, DeviceInfo, ModelDevices
from ._build.variant import BuiltVariant, build_report, build_variant, find_variant
from ._errors import BackendUnavailableError, BuildError
from ._native.lib import NativeLib, import_native, loaded_natives
from ._plugins.manager import get_plugin_host
from ._progress import build_progress

__all__ = ["BackendStatus", "backend_model_devices", "backends", "default_native", "devices",
           "load_native", "open_backend", "resolve_backend"]

logger = logging.getLogger("llamakit.backends")

Settings = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class BackendStatus:
    """One registered backend as seen from this machine."""

    name: str
    priority: int
    plugin: str
    description: str
    available: bool
    built: bool
    reason: str
    devices: tuple[DeviceInfo, ...] = ()
    score: float | None = None
    build_report: dict[str, str] = field(default_factory=dict)
    """What the backend's ``describe_build`` said about the built variant (empty when not
    built, or built before it was recorded)."""


def _settings(settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    from ._config import ambient_config  # the [backends.*] tables of $LLAMAKIT_CONFIG and env

    return ambient_config().backends


def _find_or_build(spec: BackendSpec) -> BuiltVariant:
    variant = find_variant(spec)
    if variant is not None:
        return variant
    callback, bar = build_progress(None, spec.name)  # a build of minutes: show it
    try:
        return build_variant(spec, progress=callback)
    finally:
        if bar is not None:
            bar.close()


def load_native(spec: BackendSpec, settings: Mapping[str, Any] | None = None) -> NativeLib:
    """Import the native module of ``spec``, building its variant first if the cache
    lacks it."""
    return import_native(spec, settings, _find_or_build)


def default_native() -> NativeLib:
    """A native module for work that is the same in every variant of one llama.cpp
    (JSON-schema conversion, built-in chat formats) when no model says which: one already
    loaded (the CPU one first), else the CPU variant (the cheapest to load), else the
    default backend."""
    loaded = loaded_natives()
    if loaded:
        return loaded.get("cpu") or next(iter(loaded.values()))
    try:
        return resolve_backend("cpu")
    except BackendUnavailableError:
        return resolve_backend(None)


def _status(spec: BackendSpec, settings: Settings) -> BackendStatus:
    missing = list(spec.check_prerequisites())
    variant = find_variant(spec)
    common = {"name": spec.name, "priority": spec.priority, "plugin": spec.plugin,
              "description": spec.description, "built": variant is not None,
              "build_report": build_report(spec, variant) if variant else {}}
    unusable = spec.check_usable(settings.get(spec.name) or {})
    if unusable is not None:
        return BackendStatus(**common, available=False,  # type: ignore[arg-type]
                             reason=f"unavailable: {unusable}")
    if variant is None:
        if missing:
            return BackendStatus(**common, available=False,  # type: ignore[arg-type]
                                 reason="cannot be built: missing "
                                        + "; ".join(str(m) for m in missing))
        return BackendStatus(**common, available=True,  # type: ignore[arg-type]
                             reason="not built yet; builds on first use")
    try:
        found = tuple(load_native(spec, settings.get(spec.name)).devices())
    except Exception as exc:  # a probe failure makes the backend unavailable, not the listing
        return BackendStatus(**common, available=False,  # type: ignore[arg-type]
                             reason=f"probe failed: {exc}")
    score = float(spec.score(found))
    reason = "ready" if score > 0 else _no_device_reason(spec, found)
    return BackendStatus(**common, available=score > 0, reason=reason,  # type: ignore[arg-type]
                         devices=found, score=score)


def backends(settings: Settings | None = None) -> list[BackendStatus]:
    """Every registered backend with its availability and the reason, best first.

    Built backends are probed (their devices listed); unbuilt ones are not built.
    """
    chosen = _settings(settings)
    statuses = [_status(spec, chosen) for spec in get_plugin_host().backends().values()]
    return sorted(statuses, key=lambda s: (-s.priority, s.name))


def devices(settings: Settings | None = None) -> dict[str, list[DeviceInfo]]:
    """The devices of every built backend, by backend name."""
    return {s.name: list(s.devices) for s in backends(settings) if s.built}


def _requested(name: str | None) -> str:
    if name is None:
        name = os.environ.get("LLAMAKIT_BACKEND") or "auto"
    return name.strip().lower()


def resolve_backend(name: str | None = None, settings: Settings | None = None) -> NativeLib:
    """The loaded native module of the chosen backend, building it on first use.

    ``name`` comes from a keyword or the config; None falls back to ``$LLAMAKIT_BACKEND``,
    then ``auto``: the available backend with the best ``(priority, score)``.
    """
    return _resolve(name, get_plugin_host().backends(), _settings(settings))[1]


def open_backend(name: str | None, settings: Settings | None,
                 options: Mapping[str, Any]) -> tuple[NativeLib, ModelDevices | None]:
    """The backend of one model load and the devices it supplies for it (see
    ``resolve_backend`` and ``backend_model_devices``): the registry, the settings and the
    backend's hooks are each consulted once."""
    specs = get_plugin_host().backends()
    chosen = _settings(settings)
    spec, native = _resolve(name, specs, chosen)
    return native, _model_devices(spec, native, chosen, options)


def _resolve(name: str | None, specs: Mapping[str, BackendSpec],
             chosen: Settings) -> tuple[BackendSpec, NativeLib]:
    wanted = _requested(name)
    if wanted != "auto":
        spec = specs.get(wanted)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none"
            raise BackendUnavailableError(
                f"no backend named {wanted!r} is installed (installed: {known}); "
                f"install the llamakit-{wanted} plugin", backend=wanted)
        return spec, _load_usable(spec, chosen)
    if not any(spec.auto for spec in specs.values()):
        raise BackendUnavailableError(
            "no llamakit backend is installed; pip install llamakit-cpu", backend="auto")
    reasons = []
    for spec in sorted(specs.values(), key=lambda s: -s.priority):
        if not spec.auto:
            logger.info("auto: skipping backend %r: only used when asked for by name",
                        spec.name)
            continue
        try:
            native = _load_usable(spec, chosen)
        except BackendUnavailableError as exc:
            reasons.append(str(exc))
            logger.info("auto: skipping backend %r: %s", spec.name, exc)
            continue
        logger.info("auto: chose backend %r (priority %d, highest usable)",
                    spec.name, spec.priority)
        return spec, native
    raise BackendUnavailableError(
        "no installed backend can run here: " + " | ".join(reasons), backend="auto")


def _no_device_reason(spec: BackendSpec, found: tuple[DeviceInfo, ...]) -> str:
    names = ", ".join(f"{d.name} ({d.registry or d.type}: {d.description})" for d in found)
    return (f"backend {spec.name!r} found no usable device (devices: {names or 'none'}); "
            "see `llamakit backends` and docs/architecture.md")


def _load_usable(spec: BackendSpec, settings: Settings) -> NativeLib:
    unusable = spec.check_usable(settings.get(spec.name) or {})
    if unusable is not None:  # before building: a GPU variant can take many minutes
        raise BackendUnavailableError(f"backend {spec.name!r} cannot run here: {unusable}",
                                      backend=spec.name)
    try:
        native = load_native(spec, settings.get(spec.name))
    except BuildError as exc:
        raise BackendUnavailableError(f"backend {spec.name!r}: {exc}", backend=spec.name) from exc
    found = tuple(native.devices())
    if spec.score(found) <= 0:
        raise BackendUnavailableError(_no_device_reason(spec, found), backend=spec.name)
    return native


def backend_model_devices(native: NativeLib, settings: Settings | None,
                          options: Mapping[str, Any]) -> ModelDevices | None:
    """The devices ``native``'s backend supplies for one model load, or None (the
    variant's own devices).

    ``options`` are ``load_model``'s extra keyword arguments: they override the
    ``[backends.<name>]`` table, and both are validated by the backend's
    ``settings_model``. A keyword the backend does not know is a ``TypeError`` (as for
    any function); a bad value is a ``ConfigError`` naming the key.
    """
    spec = get_plugin_host().backends().get(native.backend)
    return _model_devices(spec, native, _settings(settings), options)


def _model_devices(spec: BackendSpec | None, native: NativeLib, settings: Settings,
                   options: Mapping[str, Any]) -> ModelDevices | None:
    from pydantic import ValidationError

    from ._config.errors import config_error_from_validation

    model = spec.settings_model if spec is not None else None
    known = set(model.model_fields) if model is not None else set()
    unknown = sorted(set(options) - known)
    if unknown:
        takes = (f"backend {native.backend!r} takes " + ", ".join(sorted(known))
                 if known else f"backend {native.backend!r} takes no backend options")
        raise TypeError(f"load_model() got unexpected keyword argument(s) "
                        f"{', '.join(repr(k) for k in unknown)} ({takes})")
    if spec is None or model is None:
        return None
    table = dict(settings.get(spec.name) or {})
    try:
        model.model_validate(table)
    except ValidationError as exc:
        raise config_error_from_validation(exc, prefix=("backends", spec.name)) from None
    try:
        validated = model.model_validate({**table, **options})
    except ValidationError as exc:  # the table was valid: a keyword is not
        raise config_error_from_validation(exc) from None
    if spec.model_devices is None:
        return None
    return spec.model_devices(native, validated)
