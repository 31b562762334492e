"""Loading plugins and calling their hooks through one typed facade.

The error policy (``docs/plugins.md``): a broken plugin never takes the others down. Every
problem (a plugin that fails to import or to register, a hook that raises or returns the
wrong thing, a name another plugin registered first, a reserved name) is a
:class:`PluginWarning` naming the plugin, and only the offending part is skipped. Plugins
take precedence in a fixed order (llamakit's own, then the first-party backends, then the
other entry points by name, then in-process registrations), and on a duplicate name the
earlier one keeps it. ``PluginWarning`` is also a ``PluginError``: with
``warnings.simplefilter("error", llamakit.PluginWarning)`` every problem raises instead.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import inspect
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, final

import pluggy

from .._backend_spec import BackendSpec
from .._chat.template import ChatTemplate
from .._command_spec import CommandSpec
from .._errors import PluginError
from .._quantize.plan import QuantizationRecipe, RecipeEntry
from .._resolver_spec import ModelResolver
from .._sampler_protocol import RESERVED_SAMPLER_NAMES, SamplerSpec
from . import hookspecs

if TYPE_CHECKING:
    from .._config import Config

__all__ = ["CORE_PLUGIN", "ENTRY_POINT_GROUP", "FIRST_PARTY", "PluginHost", "PluginInfo",
           "PluginWarning", "configure_plugin_host", "get_plugin_host", "reset_plugin_host"]

ENTRY_POINT_GROUP = "llamakit"
#: The plugin name of llamakit's own hook implementations (its quantization recipes).
CORE_PLUGIN = "llamakit"
#: The backend plugins of llamakit's repository (``plugins/``); they load right after the
#: core, before any other, so a third-party plugin cannot take their names.
FIRST_PARTY = ("llamakit-cpu", "llamakit-vulkan", "llamakit-cuda", "llamakit-rpc")
ENV_DISABLE = "LLAMAKIT_DISABLE_PLUGINS"

T = TypeVar("T")


class PluginWarning(PluginError, UserWarning):
    """A plugin problem that llamakit worked around by skipping the offending part.

    It names the plugin (``.plugin``). Being a ``PluginError`` too, it is what is raised
    where warnings are turned into errors (``-W error::llamakit.PluginWarning``).
    """


@dataclass(frozen=True)
class PluginInfo:
    """One plugin llamakit found: loaded, disabled or failed, and where it came from."""

    name: str
    status: str
    """``"loaded"``, ``"disabled"`` or ``"failed"``."""
    distribution: str | None = None
    version: str | None = None
    target: str = ""
    """The entry point's ``module:attr``, or the registered object's type."""
    reason: str = ""
    """Why it is disabled or failed to load."""


def _parse_disable(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


@final
class PluginHost:
    """Owns a pluggy manager; the only place library code calls hooks from.

    ``disabled`` names plugins not to load (a mapping gives the reason for each); None
    reads ``LLAMAKIT_DISABLE_PLUGINS`` (comma-separated names).
    """

    def __init__(self, *, load_entry_points: bool = True,
                 disabled: Sequence[str] | Mapping[str, str] | None = None) -> None:
        self.pm = pluggy.PluginManager("llamakit")
        self.pm.add_hookspecs(hookspecs.Hookspecs)
        if disabled is None:
            disabled = _parse_disable(os.environ.get(ENV_DISABLE, ""))
        self.disabled_reasons: dict[str, str] = (
            dict(disabled) if isinstance(disabled, Mapping)
            else {name: ENV_DISABLE for name in disabled})
        self.disabled = frozenset(self.disabled_reasons)
        self.load_errors: dict[str, str] = {}
        """Plugins that were found but not loaded (import or registration failed)."""
        self.distributions: dict[str, str] = {}
        """``"<distribution> <version>"`` of each loaded entry-point plugin."""
        self.problems: dict[str, list[str]] = {}
        """Every problem reported so far, by plugin (loaded ones included)."""
        self.info: dict[str, PluginInfo] = {}
        self._rank: dict[str, int] = {}
        self._next_rank = 0
        self._warned: dict[Any, Any] = {}  # warnings' registry: each message once per host
        # Each registry by hook name, built on first use: every model load and sampler
        # chain looks names up, and a registry only changes when a plugin comes or goes.
        self._registries: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()
        if load_entry_points:
            self._load_entry_points()

    # Loading -----------------------------------------------------------------------------

    def _load_entry_points(self) -> None:
        from .._version import __version__
        from . import core as recipes  # the core's own hooks, a plugin like any other

        if CORE_PLUGIN in self.disabled:
            self.info[CORE_PLUGIN] = PluginInfo(CORE_PLUGIN, "disabled", "llamakit", __version__,
                                                recipes.__name__,
                                                self.disabled_reasons[CORE_PLUGIN])
        else:
            self._register(recipes, CORE_PLUGIN, PluginInfo(
                CORE_PLUGIN, "loaded", "llamakit", __version__, recipes.__name__))
        found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        ordered = sorted(found, key=lambda ep: (ep.name not in FIRST_PARTY, ep.name))
        for entry_point in ordered:
            self._load_entry_point(entry_point)

    def _load_entry_point(self, entry_point: importlib.metadata.EntryPoint) -> None:
        name = entry_point.name
        dist = entry_point.dist
        dist_name = dist.name if dist is not None else None
        version = dist.version if dist is not None else None
        info = PluginInfo(name, "loaded", dist_name, version, entry_point.value)
        if name in self.disabled:
            self.info[name] = dataclasses.replace(info, status="disabled",
                                                  reason=self.disabled_reasons[name])
            return
        if name in self.info:
            other = self.info[name]
            self._fail(info, f"plugin {name!r} of distribution {dist_name!r} is not loaded: "
                             f"the plugin name is taken by distribution {other.distribution!r}")
            return
        try:
            plugin = entry_point.load()
        except Exception as exc:
            self._fail(info, f"plugin {name!r} ({entry_point.value}) failed to import and is "
                             f"skipped: {type(exc).__name__}: {exc}")
            return
        if self._register(plugin, name, info):
            self.distributions[name] = f"{dist_name} {version}" if dist else name

    def _register(self, plugin: object, name: str, info: PluginInfo) -> bool:
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy.PluginValidationError: a wrong hook signature
            if self.pm.get_plugin(name) is plugin:
                self.pm.unregister(name=name)
            self._fail(info, f"plugin {name!r} cannot be registered and is skipped: "
                             f"{type(exc).__name__}: {exc}")
            return False
        self.info[name] = info
        self._rank[name] = self._next_rank
        self._next_rank += 1
        self._registries.clear()
        self._check_hooks(plugin, name)
        return True

    def _fail(self, info: PluginInfo, message: str) -> None:
        self.load_errors[info.name] = message
        self.info.setdefault(info.name, dataclasses.replace(info, status="failed",
                                                            reason=message))
        self._warn(info.name, message, None)

    def _check_hooks(self, plugin: object, name: str) -> None:
        """Warn about hooks that no spec matches (typos, hooks of a newer llamakit) and
        about plugins that implement none."""
        callers = self.pm.get_hookcallers(plugin) or []
        if not callers:
            self._warn(name, f"plugin {name!r} implements no llamakit hook (are its functions "
                             "marked @llamakit.hookimpl and named llamakit_register_*?)", None)
        for caller in callers:
            if not caller.has_spec():
                self._warn(name, f"plugin {name!r} implements {caller.name!r}, which is not a "
                                 f"llamakit hook; it is ignored (the hooks are: "
                                 f"{', '.join(hook_names())})", None)

    def register(self, plugin: object, name: str) -> None:
        """Register an in-process plugin object (tests, applications); it comes after the
        loaded plugins in precedence. A wrong hook signature raises
        ``pluggy.PluginValidationError``."""
        with self._lock:
            self.pm.register(plugin, name=name)
            kind = type(plugin)
            self.info[name] = PluginInfo(name, "loaded",
                                         target=f"{kind.__module__}.{kind.__qualname__}")
            self._rank[name] = self._next_rank
            self._next_rank += 1
            self._registries.clear()
            self._check_hooks(plugin, name)

    def unregister(self, name: str) -> None:
        with self._lock:
            self.pm.unregister(name=name)
            self.info.pop(name, None)
            self._rank.pop(name, None)
            self._registries.clear()

    # Problems ----------------------------------------------------------------------------

    def _warn(self, plugin: str, message: str, where: Callable[..., Any] | None) -> None:
        """Record and warn about one problem. ``where`` (the hook implementation) is what
        the warning points at."""
        with self._lock:
            seen = self.problems.setdefault(plugin, [])
            if message not in seen:
                seen.append(message)
        # warn_explicit ignores a warning whose module is None: always pass a str.
        filename, lineno, module = f"<llamakit plugin {plugin!r}>", 0, __name__
        if where is not None:
            try:
                filename = inspect.getsourcefile(where) or filename
                lineno = inspect.getsourcelines(where)[1]
            except (OSError, TypeError):
                pass
            module = str(getattr(where, "__module__", None) or module)
        warnings.warn_explicit(PluginWarning(message, plugin=plugin), PluginWarning,
                               filename, lineno, module=module, registry=self._warned)

    # Calling hooks -----------------------------------------------------------------------

    def _call(self, hook_name: str, noun: str) -> Iterator[tuple[str, list[Any], Any]]:
        """``(plugin, items, function)`` for each implementation of a hook, in precedence
        order; an implementation that raises or returns a non-sequence is reported and
        skipped."""
        caller = getattr(self.pm.hook, hook_name)
        impls = sorted(caller.get_hookimpls(),
                       key=lambda impl: self._rank.get(impl.plugin_name, 1 << 30))
        for impl in impls:
            plugin, function = impl.plugin_name, impl.function
            try:
                returned = function()
            except Exception as exc:
                self._warn(plugin, f"plugin {plugin!r} raised in {hook_name}: "
                                   f"{type(exc).__name__}: {exc}; its {noun}s are skipped",
                           function)
                continue
            if returned is None:
                continue
            if isinstance(returned, (str, bytes, Mapping)) or not isinstance(returned, Iterable):
                self._warn(plugin, f"plugin {plugin!r} returned {returned!r} from {hook_name}; "
                                   f"expected a sequence (a list) of {noun}s; they are skipped",
                           function)
                continue
            yield plugin, list(returned), function

    def _registry(self, hook_name: str, noun: str, expected: str,
                  valid: Callable[[Any], bool], tag: Callable[[Any, str], T],
                  reserved: Callable[[], Iterable[str]] | None = None,
                  reserved_why: str = "") -> dict[str, T]:
        """Every item registered through ``hook_name`` by name, tagged with its plugin.

        Items that fail ``valid``, carry a ``reserved`` name or a name an earlier plugin
        took are reported (a ``PluginWarning`` naming the plugins) and left out. Built once
        per host until a plugin is registered or unregistered; each call gets its own copy.
        """
        with self._lock:
            cached = self._registries.get(hook_name)
            if cached is None:
                cached = self._build_registry(hook_name, noun, expected, valid, tag, reserved,
                                              reserved_why)
                self._registries[hook_name] = cached
            return dict(cached)

    def _build_registry(self, hook_name: str, noun: str, expected: str,
                        valid: Callable[[Any], bool], tag: Callable[[Any, str], T],
                        reserved: Callable[[], Iterable[str]] | None,
                        reserved_why: str) -> dict[str, T]:
        found: dict[str, T] = {}
        owner: dict[str, str] = {}
        names_reserved: frozenset[str] | None = None
        for plugin, items, function in self._call(hook_name, noun):
            for item in items:
                if not valid(item):
                    self._warn(plugin, f"plugin {plugin!r} returned {item!r} from {hook_name}; "
                                       f"expected {expected}; it is skipped", function)
                    continue
                name: str = item.name
                if reserved is not None:
                    if names_reserved is None:
                        names_reserved = frozenset(reserved())
                    if name in names_reserved:
                        self._warn(plugin, f"plugin {plugin!r} registers a {noun} named "
                                           f"{name!r}, {reserved_why}; it is skipped (choose "
                                           "another name)", function)
                        continue
                if owner.get(name) == plugin:
                    self._warn(plugin, f"plugin {plugin!r} registers the {noun} {name!r} more "
                                       "than once; the first is used", function)
                    continue
                if name in owner:
                    self._warn(plugin, f"{noun} {name!r} is registered by both {owner[name]!r} "
                                       f"and {plugin!r}; the one of {owner[name]!r} is used. "
                                       f"Uninstall or disable one ({ENV_DISABLE} or "
                                       "[plugins] disable)", function)
                    continue
                owner[name] = plugin
                found[name] = tag(item, plugin)
        return found

    def backends(self) -> dict[str, BackendSpec]:
        """Every registered backend by name, each tagged with its plugin."""
        return self._registry(
            "llamakit_register_backends", "backend", "llamakit.BackendSpec objects",
            lambda spec: isinstance(spec, BackendSpec),
            lambda spec, plugin: dataclasses.replace(spec, plugin=plugin))

    def samplers(self) -> dict[str, SamplerSpec]:
        """Every registered Python sampler by name, each tagged with its plugin."""
        return self._registry(
            "llamakit_register_samplers", "sampler", "llamakit.SamplerSpec objects",
            lambda spec: isinstance(spec, SamplerSpec),
            lambda spec, plugin: dataclasses.replace(spec, plugin=plugin),
            reserved=lambda: RESERVED_SAMPLER_NAMES,
            reserved_why="which is a llama.cpp stage name")

    def chat_templates(self) -> dict[str, ChatTemplate]:
        """Every registered chat template by name, each tagged with its plugin."""
        return self._registry(
            "llamakit_register_chat_templates", "chat template", "llamakit.ChatTemplate objects",
            lambda template: isinstance(template, ChatTemplate),
            lambda template, plugin: dataclasses.replace(template, plugin=plugin))

    def quantizers(self) -> dict[str, RecipeEntry]:
        """Every registered quantization recipe by name, with the plugin it came from."""
        return self._registry(
            "llamakit_register_quantizers", "quantization recipe",
            "objects with a non-empty str 'name', a 'description' and prepare(plan) "
            "(llamakit.QuantizationRecipe)",
            lambda recipe: isinstance(recipe, QuantizationRecipe)
            and isinstance(recipe.name, str) and bool(recipe.name),
            lambda recipe, plugin: RecipeEntry(plugin=plugin, recipe=recipe))

    def commands(self) -> dict[str, CommandSpec]:
        """Every registered ``llamakit`` subcommand by name, each tagged with its plugin."""
        return self._registry(
            "llamakit_register_commands", "command", "llamakit.CommandSpec objects",
            lambda spec: isinstance(spec, CommandSpec),
            lambda spec, plugin: dataclasses.replace(spec, plugin=plugin))

    def model_resolvers(self) -> dict[str, ModelResolver]:
        """Every registered model resolver by name, in precedence order, each tagged with
        its plugin."""
        return self._registry(
            "llamakit_register_model_resolvers", "model resolver",
            "llamakit.ModelResolver objects",
            lambda resolver: isinstance(resolver, ModelResolver) and callable(resolver.resolve),
            lambda resolver, plugin: dataclasses.replace(resolver, plugin=plugin))

    def registrations(self) -> dict[str, dict[str, list[str]]]:
        """What each plugin registered: plugin -> kind ("backends", ...) -> sorted names."""
        kinds: dict[str, Callable[[], Mapping[str, Any]]] = {
            "backends": self.backends, "samplers": self.samplers,
            "chat templates": self.chat_templates, "quantization recipes": self.quantizers,
            "commands": self.commands, "model resolvers": self.model_resolvers}
        result: dict[str, dict[str, list[str]]] = {}
        for kind, collect in kinds.items():
            for name, item in collect().items():
                result.setdefault(item.plugin, {}).setdefault(kind, []).append(name)
        for per_kind in result.values():
            for names in per_kind.values():
                names.sort()
        return result

    def hooks_of(self, name: str) -> list[str]:
        """The llamakit hooks the plugin ``name`` implements."""
        plugin = self.pm.get_plugin(name)
        callers = self.pm.get_hookcallers(plugin) if plugin is not None else None
        return sorted(caller.name for caller in callers or [])


def hook_names() -> list[str]:
    """The names of llamakit's hookspecs."""
    return sorted(name for name in vars(hookspecs.Hookspecs) if name.startswith("llamakit_"))


def _disabled_by(config: Config | None, environ: Mapping[str, str]) -> dict[str, str]:
    reasons = {name: ENV_DISABLE for name in _parse_disable(environ.get(ENV_DISABLE, ""))}
    if config is None:
        from .._config import ambient_config, load_config

        config = ambient_config() if environ is os.environ else load_config(env=environ)
    origin = config.origin("plugins.disable")
    for name in config.plugins.disable:
        reasons.setdefault(name, f"[plugins] disable ({origin})")
    return reasons


_host: PluginHost | None = None
_host_lock = threading.Lock()


def get_plugin_host() -> PluginHost:
    """The process-wide plugin host, created on first use.

    It leaves out the plugins named by ``LLAMAKIT_DISABLE_PLUGINS`` and by ``[plugins]
    disable`` of the process's config (``LLAMAKIT_CONFIG``, ``LLAMAKIT_PLUGINS__DISABLE``).
    """
    global _host
    with _host_lock:
        if _host is None:
            _host = PluginHost(disabled=_disabled_by(None, os.environ))
        return _host


def configure_plugin_host(config: Config) -> PluginHost:
    """Make the process-wide host honour ``config``'s ``[plugins] disable`` (plus
    ``LLAMAKIT_DISABLE_PLUGINS``): it is rebuilt when the set of disabled plugins differs."""
    global _host
    wanted = _disabled_by(config, os.environ)
    with _host_lock:
        if _host is None or _host.disabled != frozenset(wanted):
            _host = PluginHost(disabled=wanted)
        return _host


def reset_plugin_host(host: PluginHost | None = None) -> PluginHost | None:
    """Replace the process-wide host (None: rebuild on next use); returns the old one."""
    global _host
    with _host_lock:
        old, _host = _host, host
        return old
