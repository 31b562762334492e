"""Plugins on the command line: ``llamakit_register_commands`` and ``llamakit plugins``."""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import logging
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

import llamakit
from llamakit import CommandSpec, PluginError, hookimpl
from llamakit._plugins.cli import add_plugin_subcommands, list_plugins
from llamakit._plugins.manager import PluginHost, reset_plugin_host

BUILTIN = {"info", "generate"}


def _command(name: str, run: Callable[[argparse.Namespace], Any],
             configure: Callable[[argparse.ArgumentParser], None] | None = None) -> CommandSpec:
    return CommandSpec(name, f"the {name} command", configure or (lambda parser: None), run)


def _plugin(*commands: CommandSpec) -> object:
    class Plugin:
        @hookimpl
        def llamakit_register_commands(self) -> Sequence[CommandSpec]:
            return list(commands)

    return Plugin()


@pytest.fixture
def host() -> Iterator[PluginHost]:
    """A process-wide host without entry points, restored afterwards."""
    fresh = PluginHost(load_entry_points=False)
    old = reset_plugin_host(fresh)
    try:
        yield fresh
    finally:
        reset_plugin_host(old)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llamakit")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in sorted(BUILTIN):
        sub.add_parser(name).set_defaults(func=lambda args: 0)
    add_plugin_subcommands(sub, set(BUILTIN))
    return parser


def test_plugin_command_runs_with_its_arguments(host: PluginHost) -> None:
    """llamakit_register_commands: the command's arguments are parsed, run gets them, and its
    status comes back (None: 0)."""
    seen: list[argparse.Namespace] = []

    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("path")
        parser.add_argument("--times", type=int, default=1)

    def run(args: argparse.Namespace) -> int:
        seen.append(args)
        return 3

    host.register(_plugin(_command("greet", run, configure),
                          _command("quiet", lambda args: None)), name="greet-plugin")
    assert host.commands()["greet"].plugin == "greet-plugin"
    args = _parser().parse_args(["greet", "x.gguf", "--times", "2"])
    assert args.func(args) == 3
    assert (seen[0].path, seen[0].times) == ("x.gguf", 2)
    quiet = _parser().parse_args(["quiet"])
    assert quiet.func(quiet) == 0
    with pytest.raises(SystemExit):
        _parser().parse_args(["greet"])  # its required argument is missing


def test_help_names_the_plugin(host: PluginHost) -> None:
    host.register(_plugin(_command("greet", lambda args: 0)), name="greet-plugin")
    assert "the greet command [plugin greet-plugin]" in _parser().format_help()


def test_builtin_names_are_kept(host: PluginHost, caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []
    host.register(_plugin(_command("info", lambda args: ran.append("plugin")),
                          _command("plugins", lambda args: ran.append("plugin")),
                          _command("mine", lambda args: 0)), name="greedy-plugin")
    with caplog.at_level(logging.WARNING, logger="llamakit.plugins"):
        parser = _parser()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert all("'greedy-plugin'" in m and "built-in" in m for m in messages)
    args = parser.parse_args(["info"])
    assert args.func(args) == 0 and ran == []
    assert parser.parse_args(["mine"]).func is not None


def test_configure_failure_drops_only_that_command(host: PluginHost,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    def broken(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--help")  # conflicts with argparse's own

    host.register(_plugin(_command("broken", lambda args: 0, broken),
                          _command("fine", lambda args: 5)), name="half-plugin")
    with caplog.at_level(logging.WARNING, logger="llamakit.plugins"):
        parser = _parser()
    assert "'half-plugin' failed to configure its command 'broken'" in caplog.text
    assert "broken" not in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["broken"])
    args = parser.parse_args(["fine"])
    assert args.func(args) == 5


@pytest.mark.parametrize("run, match", [
    (lambda args: 1 / 0, "command 'bad' of plugin 'bad-plugin' failed: ZeroDivisionError"),
    (lambda args: "done", "returned 'done'; expected an exit status"),
])
def test_run_failures_name_the_plugin(host: PluginHost, run: Callable[..., Any],
                                      match: str) -> None:
    host.register(_plugin(_command("bad", run)), name="bad-plugin")
    args = _parser().parse_args(["bad"])
    with pytest.raises(PluginError, match=match) as info:
        args.func(args)
    assert info.value.plugin == "bad-plugin"


def test_llamakit_errors_pass_through(host: PluginHost) -> None:
    def run(args: argparse.Namespace) -> int:
        raise llamakit.ModelNotFoundError("no model at x.gguf")

    host.register(_plugin(_command("bad", run)), name="bad-plugin")
    args = _parser().parse_args(["bad"])
    with pytest.raises(llamakit.ModelNotFoundError):
        args.func(args)


@pytest.mark.parametrize("name", ["", "Upper", "two words", "-dash", "x--y", 3])
def test_command_names_are_checked(name: Any) -> None:
    with pytest.raises(PluginError, match="command name"):
        _command(name, lambda args: 0)


def test_command_fields_are_checked() -> None:
    with pytest.raises(PluginError, match="run must be callable"):
        CommandSpec("ok", "help", lambda parser: None, "not callable")  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="help must be a str"):
        CommandSpec("ok", None, lambda parser: None, lambda args: 0)  # type: ignore[arg-type]


# `llamakit plugins` ------------------------------------------------------------------------

def test_listing_shows_loaded_disabled_failed_and_problems(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.entry_points

    def entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
        return [*real(group=group), importlib.metadata.EntryPoint(
            name="broken-plugin", value="lk_test_no_such_module_xyz", group=group)]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", llamakit.PluginWarning)
        host = PluginHost(disabled={"llamakit-vulkan": "LLAMAKIT_DISABLE_PLUGINS",
                                    "not-installed": "[plugins] disable (config file x)"})
    host.register(_plugin(_command("greet", lambda args: 0), _command("greet", lambda a: 0)),
                  name="in-process")
    out = io.StringIO()
    list_plugins(host, out)
    text = out.getvalue()
    version = importlib.metadata.version("llamakit-cpu")
    assert text.startswith(f"{len(host.pm.get_plugins())} loaded, 1 disabled, 1 failed")
    assert (f"llamakit-cpu  [llamakit-cpu {version}]  llamakit_cpu\n"
            "    hooks: llamakit_register_backends\n    backends: cpu\n") in text
    assert ("in-process  [registered in-process]  test_plugins_cli._plugin.<locals>.Plugin\n"
            "    hooks: llamakit_register_commands\n    commands: greet\n"
            "    problem: plugin 'in-process' registers the command 'greet' more than once; "
            "the first is used\n") in text
    assert "disabled:\n  llamakit-vulkan  [llamakit-vulkan " in text
    assert "by LLAMAKIT_DISABLE_PLUGINS\n" in text
    assert "  not-installed  (not installed)  by [plugins] disable (config file x)\n" in text
    assert ("failed to load:\n  broken-plugin  [?]  plugin 'broken-plugin' "
            "(lk_test_no_such_module_xyz) failed to import") in text
    assert "vulkan" not in text.split("disabled:")[0]


def test_python_m_llamakit_plugins_lists_the_installed_plugins() -> None:
    """The real command line, in a fresh process, with the installed plugins."""
    run = subprocess.run([sys.executable, "-m", "llamakit", "plugins"], capture_output=True,
                         text=True, timeout=120,
                         env={**_clean_env(), "LLAMAKIT_DISABLE_PLUGINS": "llamakit-vulkan"})
    assert run.returncode == 0, run.stderr
    assert "llamakit-cpu  [llamakit-cpu " in run.stdout
    assert "    quantization recipes: edge-layers-q8" in run.stdout
    assert "llamakit-vulkan  [llamakit-vulkan " in run.stdout.split("disabled:")[1]


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items()
            if not k.startswith("LLAMAKIT_") or k == "LLAMAKIT_CACHE_DIR"}
