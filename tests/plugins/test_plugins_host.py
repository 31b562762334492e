"""The plugin host's error policy, precedence and disabling, the same for every hook.

A broken plugin is a ``PluginWarning`` naming it, and only its offending part is skipped;
the others keep working. llamakit's test configuration turns warnings into errors, so
the lenient path is checked under ``warnings.catch_warnings``.
"""

from __future__ import annotations

import importlib.metadata
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy
import pytest

import llamakit
from llamakit import (
    BackendSpec,
    ChatTemplate,
    CommandSpec,
    ModelResolver,
    PluginError,
    PluginWarning,
    SamplerSpec,
    hookimpl,
)
from llamakit._plugins import manager
from llamakit._plugins.manager import PluginHost, get_plugin_host


class _Recipe:
    def __init__(self, name: str) -> None:
        self.name = name
        self.description = "test recipe"

    def prepare(self, plan: Any) -> Any:
        return plan


def _factory(model: Any) -> Any:
    raise AssertionError("not called")


#: hook -> (facade method, make an item named NAME, name of the plugin-tag attribute)
HOOKS: dict[str, tuple[Callable[[PluginHost], dict[str, Any]], Callable[[str], Any]]] = {
    "llamakit_register_backends": (
        PluginHost.backends,
        lambda name: BackendSpec(name=name, priority=5, description="t", libraries=())),
    "llamakit_register_samplers": (
        PluginHost.samplers, lambda name: SamplerSpec(name, _factory)),
    "llamakit_register_chat_templates": (
        PluginHost.chat_templates, lambda name: ChatTemplate(name, source="{{ 1 }}")),
    "llamakit_register_quantizers": (PluginHost.quantizers, _Recipe),
    "llamakit_register_commands": (
        PluginHost.commands,
        lambda name: CommandSpec(name, "test command", lambda parser: None, lambda args: 0)),
    "llamakit_register_model_resolvers": (
        PluginHost.model_resolvers, lambda name: ModelResolver(name, lambda reference: None)),
}


def make_plugin(hook: str, returns: Callable[[], Any]) -> object:
    """A plugin object implementing ``hook`` by calling ``returns``."""
    def implementation(self: object) -> Any:
        return returns()

    implementation.__name__ = implementation.__qualname__ = hook
    return type("Plugin", (), {hook: hookimpl(implementation)})()


def collect(host: PluginHost, hook: str) -> tuple[dict[str, Any], list[PluginWarning]]:
    """What the facade returns for ``hook`` under lenient warnings, and the warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = HOOKS[hook][0](host)
    problems = [w.message for w in caught if isinstance(w.message, PluginWarning)]
    assert len(problems) == len(caught), [str(w.message) for w in caught]
    return found, problems


def plugin_of(item: Any) -> str:
    return str(item.plugin)


@pytest.fixture(params=sorted(HOOKS))
def hook(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_facade_covers_every_hookspec() -> None:
    """This module's table is complete: a new hook gets the policy tests too."""
    assert sorted(HOOKS) == manager.hook_names()


def test_items_are_tagged_with_their_plugin(hook: str) -> None:
    host = PluginHost(load_entry_points=False)
    make = HOOKS[hook][1]
    host.register(make_plugin(hook, lambda: [make("alpha"), make("beta")]), name="two-plugin")
    found, problems = collect(host, hook)
    assert problems == []
    assert sorted(found) == ["alpha", "beta"]
    assert {plugin_of(item) for item in found.values()} == {"two-plugin"}


def test_wrong_item_type_skips_only_that_item(hook: str) -> None:
    host = PluginHost(load_entry_points=False)
    make = HOOKS[hook][1]
    host.register(make_plugin(hook, lambda: ["alpha", make("beta")]), name="sloppy-plugin")
    host.register(make_plugin(hook, lambda: [make("gamma")]), name="good-plugin")
    found, problems = collect(host, hook)
    assert sorted(found) == ["beta", "gamma"]
    assert len(problems) == 1 and problems[0].plugin == "sloppy-plugin"
    assert "'alpha'" in str(problems[0]) and hook in str(problems[0])
    assert host.problems["sloppy-plugin"] == [str(problems[0])]


@pytest.mark.parametrize("returned", ["not-a-list", 42, {"a": 1}], ids=["str", "int", "dict"])
def test_non_sequence_return_skips_the_plugin(hook: str, returned: object) -> None:
    host = PluginHost(load_entry_points=False)
    host.register(make_plugin(hook, lambda: returned), name="scalar-plugin")
    host.register(make_plugin(hook, lambda: [HOOKS[hook][1]("gamma")]), name="good-plugin")
    found, problems = collect(host, hook)
    assert list(found) == ["gamma"]
    assert [p.plugin for p in problems] == ["scalar-plugin"]
    assert "expected a sequence" in str(problems[0])


def test_raising_hook_skips_that_plugin(hook: str) -> None:
    def boom() -> list[Any]:
        raise RuntimeError("boom")

    host = PluginHost(load_entry_points=False)
    host.register(make_plugin(hook, boom), name="raising-plugin")
    host.register(make_plugin(hook, lambda: [HOOKS[hook][1]("gamma")]), name="good-plugin")
    found, problems = collect(host, hook)
    assert list(found) == ["gamma"]
    assert [p.plugin for p in problems] == ["raising-plugin"]
    assert "RuntimeError: boom" in str(problems[0]) and hook in str(problems[0])


def test_duplicate_keeps_the_first_and_names_both(hook: str) -> None:
    host = PluginHost(load_entry_points=False)
    make = HOOKS[hook][1]
    host.register(make_plugin(hook, lambda: [make("same")]), name="first-plugin")
    host.register(make_plugin(hook, lambda: [make("same"), make("other")]),
                  name="second-plugin")
    found, problems = collect(host, hook)
    assert plugin_of(found["same"]) == "first-plugin"
    assert plugin_of(found["other"]) == "second-plugin"
    assert [p.plugin for p in problems] == ["second-plugin"]
    text = str(problems[0])
    assert "'first-plugin'" in text and "'second-plugin'" in text and "disable" in text


def test_strict_warnings_raise_a_plugin_error(hook: str) -> None:
    """Turned into errors, a problem is a PluginError (PluginWarning is one)."""
    host = PluginHost(load_entry_points=False)
    make = HOOKS[hook][1]
    host.register(make_plugin(hook, lambda: [make("same")]), name="first-plugin")
    host.register(make_plugin(hook, lambda: [make("same")]), name="second-plugin")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        with pytest.raises(PluginError, match="second-plugin"):
            HOOKS[hook][0](host)


def test_each_problem_is_warned_once_per_host() -> None:
    host = PluginHost(load_entry_points=False)
    host.register(make_plugin("llamakit_register_backends", lambda: ["x"]), name="bad-plugin")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        host.backends()
        host.backends()
    assert len(caught) == 1
    assert host.problems["bad-plugin"] == [str(caught[0].message)]


def test_warning_points_at_the_hook_implementation() -> None:
    host = PluginHost(load_entry_points=False)
    host.register(make_plugin("llamakit_register_backends", lambda: ["x"]), name="bad-plugin")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        host.backends()
    assert Path(caught[0].filename).resolve() == Path(__file__).resolve()


def test_reserved_sampler_names_are_skipped() -> None:
    host = PluginHost(load_entry_points=False)
    host.register(make_plugin("llamakit_register_samplers",
                              lambda: [SamplerSpec("top_k", _factory),
                                       SamplerSpec("mine", _factory)]), name="clash-plugin")
    found, problems = collect(host, "llamakit_register_samplers")
    assert list(found) == ["mine"]
    assert "'top_k'" in str(problems[0]) and "llama.cpp stage name" in str(problems[0])


def test_wrong_hook_signature_is_refused_at_registration() -> None:
    """pluggy validates a hookimpl's arguments against the spec when it is registered."""
    class WrongSignature:
        @hookimpl
        def llamakit_register_backends(self, config: object) -> list[Any]:
            return []

    host = PluginHost(load_entry_points=False)
    with pytest.raises(pluggy.PluginValidationError):
        host.register(WrongSignature(), name="wrong-plugin")
    assert "wrong-plugin" not in host.info


def test_unknown_hook_and_empty_plugin_are_warned() -> None:
    class Typo:
        @hookimpl
        def llamakit_register_sampler(self) -> list[Any]:  # missing "s"
            return []

    host = PluginHost(load_entry_points=False)
    with pytest.warns(PluginWarning, match="'typo-plugin' implements 'llamakit_register_sampler'"
                      r".*not a llamakit hook"):
        host.register(Typo(), name="typo-plugin")
    with pytest.warns(PluginWarning, match="'empty-plugin' implements no llamakit hook"):
        host.register(object(), name="empty-plugin")


# Entry points -----------------------------------------------------------------------------

@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Add entry points to the real ones: a name and a module object (imported from
    ``sys.modules``) or import path, with an optional ``:attr``."""
    added: list[importlib.metadata.EntryPoint] = []
    real = importlib.metadata.entry_points

    def entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
        return [*real(group=group), *added]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)

    def add(name: str, module: types.ModuleType | str, attr: str | None = None) -> None:
        if isinstance(module, types.ModuleType):
            monkeypatch.setitem(sys.modules, module.__name__, module)
            module = module.__name__
        value = f"{module}:{attr}" if attr else module
        added.append(importlib.metadata.EntryPoint(name=name, value=value, group="llamakit"))

    return add


def _module(name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    return module


def test_core_and_first_party_names_are_never_displaced(
        fake_entry_points: Callable[..., None]) -> None:
    """A third-party plugin sorting first still cannot take the core's or a first-party
    backend's names."""
    @hookimpl
    def llamakit_register_quantizers() -> list[Any]:
        return [_Recipe("edge-layers-q8")]

    @hookimpl
    def llamakit_register_backends() -> list[Any]:
        return [HOOKS["llamakit_register_backends"][1]("cpu")]

    fake_entry_points("aaa-shadow", _module(
        "lk_test_shadow_plugin", llamakit_register_quantizers=llamakit_register_quantizers,
        llamakit_register_backends=llamakit_register_backends))
    host = PluginHost()
    with pytest.warns(PluginWarning, match="'llamakit' and 'aaa-shadow'"):
        assert host.quantizers()["edge-layers-q8"].plugin == "llamakit"
    with pytest.warns(PluginWarning, match="'llamakit-cpu' and 'aaa-shadow'"):
        assert host.backends()["cpu"].plugin == "llamakit-cpu"


def test_broken_entry_points_do_not_take_the_others_down(
        fake_entry_points: Callable[..., None], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    class WrongSignature:
        @hookimpl
        def llamakit_register_samplers(self, model: object) -> list[Any]:
            return []

    (tmp_path / "lk_test_raising_module.py").write_text("raise RuntimeError('broken at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_entry_points("import-fails", "lk_test_no_such_module_xyz")
    fake_entry_points("raises-on-import", "lk_test_raising_module")
    fake_entry_points("missing-attr", _module("lk_test_empty_module"), "plugin")
    fake_entry_points("wrong-signature", _module("lk_test_wrong_sig", plugin=WrongSignature()),
                      "plugin")
    fake_entry_points("no-hooks", _module("lk_test_no_hooks"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        host = PluginHost()
    broken = {"import-fails", "raises-on-import", "missing-attr", "wrong-signature"}
    names = {w.message.plugin for w in caught if isinstance(w.message, PluginWarning)}
    assert names == broken | {"no-hooks"}
    assert set(host.load_errors) == broken
    assert "ModuleNotFoundError" in host.load_errors["import-fails"]
    assert "RuntimeError: broken at import" in host.load_errors["raises-on-import"]
    assert "AttributeError" in host.load_errors["missing-attr"]
    assert "PluginValidationError" in host.load_errors["wrong-signature"]
    assert {host.info[name].status for name in broken} == {"failed"}
    assert "cpu" in host.backends() and "edge-layers-q8" in host.quantizers()
    # a module without hooks loads, with a warning that it implements none
    assert host.info["no-hooks"].status == "loaded"
    assert "implements no llamakit hook" in host.problems["no-hooks"][0]


def test_a_taken_plugin_name_is_a_load_error(fake_entry_points: Callable[..., None]) -> None:
    fake_entry_points("llamakit-cpu", _module("lk_test_impostor"))
    with pytest.warns(PluginWarning, match="name is taken by distribution 'llamakit-cpu'"):
        host = PluginHost()
    assert host.backends()["cpu"].plugin == "llamakit-cpu"


# Disabling -----------------------------------------------------------------------------------

def test_env_disables(monkeypatch: pytest.MonkeyPatch, fresh_process_host: None) -> None:
    monkeypatch.setenv("LLAMAKIT_DISABLE_PLUGINS", " llamakit-vulkan , llamakit")
    host = get_plugin_host()
    assert "vulkan" not in host.backends() and "cpu" in host.backends()
    assert "edge-layers-q8" not in host.quantizers()
    assert host.info["llamakit-vulkan"].status == "disabled"
    assert host.info["llamakit-vulkan"].reason == "LLAMAKIT_DISABLE_PLUGINS"


def test_config_file_disables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                              fresh_process_host: None) -> None:
    config = tmp_path / "llamakit.toml"
    config.write_text('[plugins]\ndisable = ["llamakit-vulkan", "llamakit"]\n')
    monkeypatch.setenv("LLAMAKIT_CONFIG", str(config))
    monkeypatch.delenv("LLAMAKIT_DISABLE_PLUGINS", raising=False)
    host = get_plugin_host()
    assert "vulkan" not in host.backends()
    assert host.info["llamakit-vulkan"].reason == f"[plugins] disable (config file {config})"
    assert "edge-layers-q8" not in llamakit.quantization_recipes()  # the library's host


def test_config_environment_variable_disables(monkeypatch: pytest.MonkeyPatch,
                                              fresh_process_host: None) -> None:
    monkeypatch.setenv("LLAMAKIT_PLUGINS__DISABLE", '["llamakit"]')
    assert "edge-layers-q8" not in llamakit.quantization_recipes()


def test_configure_plugin_host_follows_a_config(fresh_process_host: None) -> None:
    first = manager.configure_plugin_host(llamakit.load_config(plugins={"disable": []}))
    assert first is get_plugin_host()
    assert manager.configure_plugin_host(llamakit.load_config()) is first  # same set: kept
    second = manager.configure_plugin_host(
        llamakit.load_config(plugins={"disable": ["llamakit-vulkan"]}))
    assert second is not first and second is get_plugin_host()
    assert "vulkan" not in second.backends()
    assert second.disabled_reasons["llamakit-vulkan"] == \
        "[plugins] disable (keyword argument plugins=)"
