"""``CommandSpec``: a ``llamakit`` subcommand that a plugin adds to the command line."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import PluginError

__all__ = ["CommandSpec"]

# What argparse and a shell take as a subcommand without quoting: ``example-stats``.
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


@dataclass(frozen=True)
class CommandSpec:
    """A subcommand of ``llamakit``, registered through ``llamakit_register_commands``.

    ``configure(parser)`` adds the command's arguments to its own
    ``argparse.ArgumentParser``; ``run(args)`` runs it with the parsed
    ``argparse.Namespace`` (which also holds the global options, ``args.backend`` and
    ``args.debug``) and returns the exit status (``None`` means 0). A
    :class:`llamakit.LlamakitError` raised by ``run`` is printed as ``llamakit: error: ...``
    (exit status 1), like the built-in commands' errors. ``plugin`` is filled in by
    llamakit with the registering plugin's name.
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    plugin: str = ""

    def __post_init__(self) -> None:
        where = f" (plugin {self.plugin!r})" if self.plugin else ""
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise PluginError(f"command name {self.name!r}{where} must be lower-case letters "
                              "and digits, words joined by '-' or '_', starting with a letter",
                              plugin=self.plugin or None)
        if not isinstance(self.help, str):
            raise PluginError(f"command {self.name!r}{where}: help must be a str",
                              plugin=self.plugin or None)
        for field in ("configure", "run"):
            if not callable(getattr(self, field)):
                raise PluginError(f"command {self.name!r}{where}: {field} must be callable",
                                  plugin=self.plugin or None)
