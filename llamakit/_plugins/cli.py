"""The command line's plugin side: plugins' subcommands and the ``llamakit plugins`` listing.

``llamakit/__main__.py`` calls :func:`add_plugin_subcommands` from its ``build_parser``,
after adding its own subcommands.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable
from typing import Any, TextIO

from .._command_spec import CommandSpec
from .._errors import LlamakitError, PluginError
from .manager import PluginHost, PluginWarning, get_plugin_host

__all__ = ["add_plugin_subcommands", "list_plugins"]

logger = logging.getLogger("llamakit.plugins")

#: The built-in command this module adds itself.
PLUGINS_COMMAND = "plugins"


def _runner(spec: CommandSpec) -> Callable[[argparse.Namespace], int]:
    """``run`` wrapped: None means 0; a failure that is not a ``LlamakitError`` becomes a
    ``PluginError`` naming the plugin (the CLI prints those as one line)."""
    def run(args: argparse.Namespace) -> int:
        try:
            status = spec.run(args)
        except (LlamakitError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            raise PluginError(f"command {spec.name!r} of plugin {spec.plugin!r} failed: "
                              f"{type(exc).__name__}: {exc}", plugin=spec.plugin) from exc
        if status is None:
            return 0
        if isinstance(status, bool) or not isinstance(status, int):
            raise PluginError(f"command {spec.name!r} of plugin {spec.plugin!r} returned "
                              f"{status!r}; expected an exit status (int) or None",
                              plugin=spec.plugin)
        return status

    return run


def _drop_subparser(subparsers: argparse._SubParsersAction[Any], name: str) -> None:
    """Take back a subparser whose plugin failed to configure it."""
    subparsers._name_parser_map.pop(name, None)
    subparsers._choices_actions = [action for action in subparsers._choices_actions
                                   if action.dest != name]


def add_plugin_subcommands(subparsers: argparse._SubParsersAction[Any],
                           builtin: set[str]) -> None:
    """Add ``llamakit plugins`` and one subcommand per plugin command to ``subparsers``.

    ``builtin`` holds the names of the built-in commands: a plugin command with one of
    those names (or ``plugins``) is skipped with a warning naming the plugin, as is one
    whose ``configure`` raises. Each subparser's ``func`` default runs the command and
    returns its exit status, like the built-ins.
    """
    taken = set(builtin)
    if PLUGINS_COMMAND not in taken:
        listing = subparsers.add_parser(
            PLUGINS_COMMAND, help="list plugins: what each registered, and which failed",
            description="List the plugins llamakit found: name, distribution and version, the "
            "hooks each implements and what it registered; then the disabled ones and those "
            "that failed to load, with the reason.")
        listing.set_defaults(func=_cmd_plugins)
        taken.add(PLUGINS_COMMAND)
    for name, spec in sorted(get_plugin_host().commands().items()):
        if name in taken:
            logger.warning("plugin %r registers the command %r, which is a built-in command; "
                           "it is skipped", spec.plugin, name)
            continue
        parser = subparsers.add_parser(name, help=f"{spec.help} [plugin {spec.plugin}]",
                                       description=spec.help)
        try:
            spec.configure(parser)
        except Exception as exc:
            _drop_subparser(subparsers, name)
            logger.warning("plugin %r failed to configure its command %r (%s: %s); it is "
                           "skipped", spec.plugin, name, type(exc).__name__, exc)
            continue
        parser.set_defaults(func=_runner(spec))
        taken.add(name)


def list_plugins(host: PluginHost, out: TextIO) -> None:
    """Write the ``llamakit plugins`` listing of ``host`` to ``out``."""
    with warnings.catch_warnings():  # problems are listed below, not printed as warnings
        warnings.simplefilter("ignore", PluginWarning)
        registered = host.registrations()
    infos = list(host.info.values())
    loaded = [info for info in infos if info.status == "loaded"]
    disabled = [info for info in infos if info.status == "disabled"]
    failed = [info for info in infos if info.status == "failed"]
    out.write(f"{len(loaded)} loaded, {len(disabled)} disabled, {len(failed)} failed "
              "(entry-point group 'llamakit')\n")
    for info in loaded:
        origin = (f"{info.distribution} {info.version}" if info.distribution
                  else "registered in-process")
        out.write(f"{info.name}  [{origin}]  {info.target}\n")
        out.write(f"    hooks: {', '.join(host.hooks_of(info.name)) or 'none'}\n")
        for kind, names in registered.get(info.name, {}).items():
            out.write(f"    {kind}: {', '.join(names)}\n")
        for problem in host.problems.get(info.name, []):
            out.write(f"    problem: {problem}\n")
    found = {info.name for info in infos}
    missing = sorted(host.disabled - found)
    if disabled or missing:
        out.write("disabled:\n")
        for info in disabled:
            out.write(f"  {info.name}  [{info.distribution} {info.version}]  by {info.reason}\n")
        for name in missing:
            out.write(f"  {name}  (not installed)  by {host.disabled_reasons[name]}\n")
    if failed:
        out.write("failed to load:\n")
        for info in failed:
            origin = f"{info.distribution} {info.version}" if info.distribution else "?"
            out.write(f"  {info.name}  [{origin}]  {info.reason}\n")


def _cmd_plugins(args: argparse.Namespace) -> int:
    list_plugins(get_plugin_host(), sys.stdout)
    return 0
