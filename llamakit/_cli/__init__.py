"""The ``llamakit`` command line (also ``python -m llamakit``), one module per command.

``main(argv)`` parses, runs the command and turns failures into exit statuses: a llamakit
error is one line on stderr, ``llamakit: error: ...``, and status 1 (argparse's usage errors:
2); ``--debug`` prints the traceback too; Ctrl-C is status 130. Settings come from the config
layers (see ``_options``), so every command honours ``--config FILE``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from .._errors import BuildError, LlamakitError
from . import backends, bench, chat, config, embed, generate, info, perplexity, quantize, rerank
from ._options import LlamakitParser, add_global_options

__all__ = ["BUILTIN_COMMANDS", "build_parser", "main"]

_MODULES = (backends, info, generate, chat, embed, rerank, quantize, bench, config, perplexity)


def _global_parent() -> argparse.ArgumentParser:
    parent = LlamakitParser(add_help=False)
    add_global_options(parent, top=False)
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, the plugins' included."""
    parser = LlamakitParser(
        prog="llamakit", description="Run GGUF models on llama.cpp. Every setting of the "
        "config file is also a flag (--n-ctx, --temperature, ...); 'llamakit COMMAND --help' "
        "lists a command's.")
    add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=LlamakitParser)
    parents = [_global_parent()]
    for module in _MODULES:
        module.register(sub, parents)
    builtin = set(sub.choices)
    from .._plugins.cli import add_plugin_subcommands

    add_plugin_subcommands(sub, builtin)
    return parser


BUILTIN_COMMANDS = ("backends", "devices", "info", "generate", "demo", "chat", "embed",
                    "rerank", "quantize", "bench", "build", "config", "perplexity")


def _configure_plugins(argv: Sequence[str]) -> None:
    """Honour ``[plugins] disable`` of a ``--config`` file before the plugins' commands
    are added to the parser (``$LLAMAKIT_CONFIG`` is honoured by the host itself)."""
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    early.add_argument("--config", default=None)
    known, _ = early.parse_known_args(argv)
    if known.config is not None:
        from .._config import load_config
        from .._plugins.manager import configure_plugin_host

        configure_plugin_host(load_config(known.config))


def _parse_intermixed(parser: argparse.ArgumentParser, argv: list[str],
                      args: argparse.Namespace, extras: list[str]) -> argparse.Namespace:
    """Parse the command's arguments again, flags and positionals intermixed
    (``generate MODEL --temperature 0 "Hello"``): argparse's plain parse takes only the
    first run of positionals and leaves the rest over."""
    command = getattr(args, "command", None)
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)),
               None)
    command_parser = sub.choices.get(command) if sub is not None and command else None
    if command_parser is None or any(e.startswith("-") for e in extras) \
            or command not in argv:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    try:
        again = command_parser.parse_intermixed_args(argv[argv.index(command) + 1:])
    except TypeError:  # a command with its own subcommands cannot be parsed this way
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    for key, value in vars(again).items():
        setattr(args, key, value)
    return args


def _error_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, BuildError):  # the log's tail follows: the log's path is enough
        text = text.splitlines()[0]
    if not isinstance(exc, LlamakitError):
        text = f"{type(exc).__name__}: {text}"
    return f"llamakit: error: {text}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        _configure_plugins(args_list)
        parser = build_parser()
        args, extras = parser.parse_known_args(args_list)
        if extras:
            args = _parse_intermixed(parser, args_list, args, extras)
    except LlamakitError as exc:  # a broken --config file or plugin setup
        if debug:
            traceback.print_exc()
        sys.stderr.write(_error_line(exc))
        return 1
    args.debug = getattr(args, "debug", False)
    args.backend = getattr(args, "cfg:backend.name", None)  # what plugin commands read
    args.config = getattr(args, "config", None)
    level = logging.DEBUG if args.debug else logging.INFO if getattr(args, "verbose", False) \
        else logging.ERROR if getattr(args, "quiet", False) else logging.WARNING
    logging.basicConfig(level=level, format="llamakit: %(name)s: %(message)s")
    from .._logging import set_verbosity

    set_verbosity(max(level, logging.INFO))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        sys.stderr.write("\nllamakit: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (``llamakit info m.gguf | head``): no more output, no noise.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(_error_line(exc))
        return 1
