"""Loading plugins and calling their hooks through one typed facade."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any, final

import pluggy

from .._backend_spec import BackendSpec
from .._chat.template import ChatTemplate
from .._errors import PluginError
from .._quantize.plan import QuantizationRecipe, RecipeEntry
from .._sampler_protocol import SamplerSpec
from . import hookspecs

__all__ = ["ENTRY_POINT_GROUP", "PluginHost", "get_plugin_host", "reset_plugin_host"]

ENTRY_POINT_GROUP = "llamakit"
logger = logging.getLogger("llamakit.plugins")


@final
class PluginHost:
    """Owns a pluggy manager; the only place library code calls hooks from."""

    def __init__(self, *, load_entry_points: bool = True,
                 disabled: Sequence[str] | None = None) -> None:
        self.pm = pluggy.PluginManager("llamakit")
        self.pm.add_hookspecs(hookspecs.Hookspecs)
        self.load_errors: dict[str, str] = {}
        self.distributions: dict[str, str] = {}
        if disabled is None:
            disabled = [name.strip() for name in
                        os.environ.get("LLAMAKIT_DISABLE_PLUGINS", "").split(",")
                        if name.strip()]
        self.disabled = frozenset(disabled)
        if load_entry_points:
            self._load_entry_points()

    def _load_entry_points(self) -> None:
        if "llamakit" not in self.disabled:
            from .._quantize import recipes  # the core's own recipes, a plugin like any other

            self.pm.register(recipes, name="llamakit")
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            name = entry_point.name
            if name in self.disabled or self.pm.has_plugin(name):
                continue
            try:
                plugin = entry_point.load()
                self.pm.register(plugin, name=name)
            except Exception as exc:  # a broken plugin must not take the others down
                self.load_errors[name] = f"{type(exc).__name__}: {exc}"
                logger.warning("plugin %r failed to load and is skipped: %s", name, exc)
                continue
            dist = entry_point.dist
            self.distributions[name] = f"{dist.name} {dist.version}" if dist else name

    def register(self, plugin: object, name: str) -> None:
        """Register an in-process plugin object (tests, applications)."""
        self.pm.register(plugin, name=name)

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)

    def _collect(self, hook_name: str) -> list[tuple[str, Any]]:
        caller = getattr(self.pm.hook, hook_name)
        results: list[tuple[str, Any]] = []
        for impl in reversed(caller.get_hookimpls()):
            try:
                returned = impl.function()
            except Exception as exc:
                raise PluginError(f"plugin {impl.plugin_name!r} raised in {hook_name}: {exc}",
                                  plugin=impl.plugin_name) from exc
            for item in returned or ():
                results.append((impl.plugin_name, item))
        return results

    def backends(self) -> dict[str, BackendSpec]:
        """Every registered backend by name, each tagged with its plugin."""
        found: dict[str, BackendSpec] = {}
        for plugin, spec in self._collect("llamakit_register_backends"):
            if not isinstance(spec, BackendSpec):
                raise PluginError(
                    f"plugin {plugin!r} returned {spec!r} from llamakit_register_backends; "
                    "expected llamakit.BackendSpec objects", plugin=plugin)
            if spec.name in found:
                raise PluginError(
                    f"backend {spec.name!r} is registered by both {found[spec.name].plugin!r} "
                    f"and {plugin!r}; uninstall or disable one (LLAMAKIT_DISABLE_PLUGINS)",
                    plugin=plugin)
            found[spec.name] = dataclasses.replace(spec, plugin=plugin)
        return found

    def samplers(self) -> dict[str, SamplerSpec]:
        """Every registered Python sampler by name, each tagged with its plugin."""
        from .._native.sampler import NATIVE_STAGES
        from .._sampling import sequence_names

        reserved = {*NATIVE_STAGES, *sequence_names()}
        found: dict[str, SamplerSpec] = {}
        for plugin, spec in self._collect("llamakit_register_samplers"):
            if not isinstance(spec, SamplerSpec):
                raise PluginError(
                    f"plugin {plugin!r} returned {spec!r} from llamakit_register_samplers; "
                    "expected llamakit.SamplerSpec objects", plugin=plugin)
            if spec.name in reserved:
                raise PluginError(
                    f"plugin {plugin!r} registers a sampler named {spec.name!r}, which is "
                    "a llama.cpp stage name; choose another name", plugin=plugin)
            if spec.name in found:
                raise PluginError(
                    f"sampler {spec.name!r} is registered by both {found[spec.name].plugin!r} "
                    f"and {plugin!r}; uninstall or disable one (LLAMAKIT_DISABLE_PLUGINS)",
                    plugin=plugin)
            found[spec.name] = dataclasses.replace(spec, plugin=plugin)
        return found

    def chat_templates(self) -> dict[str, ChatTemplate]:
        """Every registered chat template by name, each tagged with its plugin."""
        found: dict[str, ChatTemplate] = {}
        for plugin, template in self._collect("llamakit_register_chat_templates"):
            if not isinstance(template, ChatTemplate):
                raise PluginError(
                    f"plugin {plugin!r} returned {template!r} from "
                    "llamakit_register_chat_templates; expected llamakit.ChatTemplate objects",
                    plugin=plugin)
            if template.name in found:
                raise PluginError(
                    f"chat template {template.name!r} is registered by both "
                    f"{found[template.name].plugin!r} and {plugin!r}; uninstall or disable one "
                    "(LLAMAKIT_DISABLE_PLUGINS)", plugin=plugin)
            found[template.name] = dataclasses.replace(template, plugin=plugin)
        return found

    def quantizers(self) -> dict[str, RecipeEntry]:
        """Every registered quantization recipe by name, with the plugin it came from."""
        found: dict[str, RecipeEntry] = {}
        for plugin, recipe in self._collect("llamakit_register_quantizers"):
            if not isinstance(recipe, QuantizationRecipe) or not isinstance(recipe.name, str) \
                    or not recipe.name:
                raise PluginError(
                    f"plugin {plugin!r} returned {recipe!r} from llamakit_register_quantizers; "
                    "expected objects with a non-empty str 'name', a 'description' and "
                    "prepare(plan) (llamakit.QuantizationRecipe)", plugin=plugin)
            if recipe.name in found:
                raise PluginError(
                    f"quantization recipe {recipe.name!r} is registered by both "
                    f"{found[recipe.name].plugin!r} and {plugin!r}; uninstall or disable one "
                    "(LLAMAKIT_DISABLE_PLUGINS)", plugin=plugin)
            found[recipe.name] = RecipeEntry(plugin=plugin, recipe=recipe)
        return found


_host: PluginHost | None = None
_host_lock = threading.Lock()


def get_plugin_host() -> PluginHost:
    """The process-wide plugin host, created on first use."""
    global _host
    with _host_lock:
        if _host is None:
            _host = PluginHost()
        return _host


def reset_plugin_host(host: PluginHost | None = None) -> PluginHost | None:
    """Replace the process-wide host (None: rebuild on next use); returns the old one."""
    global _host
    with _host_lock:
        old, _host = _host, host
        return old
