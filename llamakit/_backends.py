"""Which backends exist, which can run here, and choosing one (``auto`` or by name)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._backend_spec import BackendSpec, DeviceInfo
from ._build.variant import find_variant
from ._errors import BackendUnavailableError, BuildError
from ._native.lib import NativeLib, load_native
from ._plugins.manager import get_plugin_host

__all__ = ["BackendStatus", "backends", "devices", "resolve_backend"]

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


def _settings(settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    from ._config import load_config  # the [backends.*] tables of $LLAMAKIT_CONFIG and env

    return load_config().backends


def _status(spec: BackendSpec, settings: Settings) -> BackendStatus:
    missing = list(spec.check_prerequisites())
    variant = find_variant(spec)
    common = {"name": spec.name, "priority": spec.priority, "plugin": spec.plugin,
              "description": spec.description, "built": variant is not None}
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
    wanted = _requested(name)
    specs = get_plugin_host().backends()
    chosen = _settings(settings)
    if wanted != "auto":
        spec = specs.get(wanted)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none"
            raise BackendUnavailableError(
                f"no backend named {wanted!r} is installed (installed: {known}); "
                f"install the llamakit-{wanted} plugin", backend=wanted)
        return _load_usable(spec, chosen)
    if not specs:
        raise BackendUnavailableError(
            "no llamakit backend is installed; pip install llamakit-cpu", backend="auto")
    reasons = []
    for spec in sorted(specs.values(), key=lambda s: -s.priority):
        try:
            native = _load_usable(spec, chosen)
        except BackendUnavailableError as exc:
            reasons.append(str(exc))
            logger.info("auto: skipping backend %r: %s", spec.name, exc)
            continue
        logger.info("auto: chose backend %r (priority %d, highest usable)",
                    spec.name, spec.priority)
        return native
    raise BackendUnavailableError(
        "no installed backend can run here: " + " | ".join(reasons), backend="auto")


def _no_device_reason(spec: BackendSpec, found: tuple[DeviceInfo, ...]) -> str:
    names = ", ".join(f"{d.name} ({d.registry or d.type}: {d.description})" for d in found)
    return (f"backend {spec.name!r} found no usable device (devices: {names or 'none'}); "
            "see `llamakit backends` and docs/architecture.md")


def _load_usable(spec: BackendSpec, settings: Settings) -> NativeLib:
    try:
        native = load_native(spec, settings.get(spec.name))
    except BuildError as exc:
        raise BackendUnavailableError(f"backend {spec.name!r}: {exc}", backend=spec.name) from exc
    found = tuple(native.devices())
    if spec.score(found) <= 0:
        raise BackendUnavailableError(_no_device_reason(spec, found), backend=spec.name)
    return native
