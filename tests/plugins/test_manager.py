"""Plugin discovery through the typed facade: registration, duplicates, bad returns."""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Sequence

import pytest

import llamakit
from llamakit import BackendSpec, hookimpl
from llamakit._plugins import hookspecs
from llamakit._plugins.manager import PluginHost


def _spec(name: str, priority: int = 5) -> BackendSpec:
    return BackendSpec(name=name, priority=priority, description="test", libraries=())


def test_entry_point_plugins_are_loaded() -> None:
    """The installed CPU plugin is found through the 'llamakit' entry-point group."""
    host = PluginHost()
    assert "cpu" in host.backends()
    assert host.backends()["cpu"].plugin == "llamakit-cpu"
    assert host.distributions["llamakit-cpu"].startswith("llamakit-cpu ")


def test_registered_backend_is_tagged_with_its_plugin() -> None:
    """A backend from an in-process plugin carries that plugin's name."""
    class Plugin:
        @hookimpl
        def llamakit_register_backends(self) -> Sequence[BackendSpec]:
            return [_spec("fake")]

    host = PluginHost(load_entry_points=False)
    host.register(Plugin(), name="my-plugin")
    assert host.backends()["fake"].plugin == "my-plugin"
    host.unregister("my-plugin")
    assert "fake" not in host.backends()


def test_duplicate_backend_names_both_plugins() -> None:
    """Two plugins registering one backend name is a PluginWarning (a PluginError) naming
    both; the first keeps the name."""
    class First:
        @hookimpl
        def llamakit_register_backends(self) -> Sequence[BackendSpec]:
            return [_spec("same")]

    class Second:
        @hookimpl
        def llamakit_register_backends(self) -> Sequence[BackendSpec]:
            return [_spec("same")]

    host = PluginHost(load_entry_points=False)
    host.register(First(), name="first-plugin")
    host.register(Second(), name="second-plugin")
    with pytest.warns(llamakit.PluginWarning) as record:
        found = host.backends()
    assert found["same"].plugin == "first-plugin"
    (warning,) = record
    assert isinstance(warning.message, llamakit.PluginError)
    assert "first-plugin" in str(warning.message) and "second-plugin" in str(warning.message)


def test_registries_are_built_once_per_host() -> None:
    """A registry is built on first use and reused until a plugin comes or goes."""
    calls: list[str] = []

    class Counting:
        @hookimpl
        def llamakit_register_backends(self) -> Sequence[BackendSpec]:
            calls.append("backends")
            return [_spec("counted")]

    class Later:
        @hookimpl
        def llamakit_register_backends(self) -> Sequence[BackendSpec]:
            return [_spec("later")]

    host = PluginHost(load_entry_points=False)
    host.register(Counting(), name="counting")
    first = host.backends()
    first.pop("counted")  # each caller gets its own copy
    assert "counted" in host.backends() and calls == ["backends"]
    host.register(Later(), name="later")
    assert set(host.backends()) == {"counted", "later"} and len(calls) == 2
    host.unregister("later")
    assert set(host.backends()) == {"counted"} and len(calls) == 3


def test_wrong_return_type_names_the_plugin() -> None:
    """A hook returning something other than BackendSpec is a PluginError naming it, with
    plugin warnings turned into errors."""
    class Bad:
        @hookimpl
        def llamakit_register_backends(self) -> Sequence[object]:
            return ["cpu"]

    host = PluginHost(load_entry_points=False)
    host.register(Bad(), name="bad-plugin")
    with warnings.catch_warnings():
        warnings.simplefilter("error", llamakit.PluginWarning)
        with pytest.raises(llamakit.PluginError, match="bad-plugin"):
            host.backends()


def test_raising_hook_names_the_plugin() -> None:
    """An exception inside a hook becomes a PluginError naming the plugin, with plugin
    warnings turned into errors."""
    class Raises:
        @hookimpl
        def llamakit_register_backends(self) -> Sequence[BackendSpec]:
            raise RuntimeError("boom")

    host = PluginHost(load_entry_points=False)
    host.register(Raises(), name="raising-plugin")
    with warnings.catch_warnings():
        warnings.simplefilter("error", llamakit.PluginWarning)
        with pytest.raises(llamakit.PluginError, match="raising-plugin.*boom"):
            host.backends()


def test_broken_entry_point_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin that fails to import is recorded and warned about; the others still load."""
    real = importlib.metadata.entry_points

    def entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
        found = list(real(group=group))
        found.append(importlib.metadata.EntryPoint(
            name="broken-plugin", value="llamakit_no_such_module_xyz", group=group))
        return found

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    with pytest.warns(llamakit.PluginWarning, match="broken-plugin"):
        host = PluginHost()
    assert "broken-plugin" in host.load_errors
    assert "cpu" in host.backends()


def test_disabled_plugins_are_not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """LLAMAKIT_DISABLE_PLUGINS keeps a plugin out."""
    monkeypatch.setenv("LLAMAKIT_DISABLE_PLUGINS", "llamakit-cpu")
    assert "cpu" not in PluginHost().backends()


def test_every_hookspec_is_documented() -> None:
    """Each hookspec has a docstring that lists its parameters."""
    names = [n for n in dir(hookspecs.Hookspecs) if n.startswith("llamakit_")]
    assert names
    for name in names:
        doc = getattr(hookspecs.Hookspecs, name).__doc__ or ""
        assert "Parameters" in doc and "Returns" in doc, name
