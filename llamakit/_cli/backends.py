"""``llamakit backends``, ``llamakit devices`` and ``llamakit build``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from .._errors import BackendUnavailableError
from ._common import cli_config

__all__ = ["register"]


def _cmd_backends(args: argparse.Namespace) -> int:
    from .._backends import backends

    config, _ = cli_config(args)
    statuses = backends(config.backends)
    if args.json:
        print(json.dumps([{**asdict(s), "devices": [asdict(d) for d in s.devices]}
                          for s in statuses], indent=2))
        return 0
    for status in statuses:
        mark = "yes" if status.available else "no "
        print(f"{status.name:10} available={mark} priority={status.priority:<3} "
              f"plugin={status.plugin}  {status.reason}")
        for fact, text in status.build_report.items():
            print(f"    {fact}: {text}")
        for device in status.devices:
            print(f"    [{device.index}] {device.name} ({device.type}): {device.description}, "
                  f"{device.memory_total / 2**30:.1f} GiB")
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    from .._backends import devices

    config, _ = cli_config(args)
    found = devices(config.backends)
    if args.json:
        print(json.dumps({name: [asdict(d) for d in ds] for name, ds in found.items()},
                         indent=2))
        return 0
    for backend, listed in found.items():
        for d in listed:
            print(f"{backend:10} [{d.index}] {d.registry or '-':8} {d.type:5} {d.name}: "
                  f"{d.description} ({d.memory_free / 2**30:.1f}/{d.memory_total / 2**30:.1f} "
                  "GiB free)")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from .._build.variant import build_variant
    from .._plugins.manager import get_plugin_host
    from .._progress import build_progress

    config, _ = cli_config(args)
    specs = get_plugin_host().backends()
    names = args.backends or sorted(specs)
    for name in names:
        if name not in specs:
            raise BackendUnavailableError(
                f"no backend named {name!r} is installed (installed: {', '.join(sorted(specs))})",
                backend=name)
    for name in names:
        callback, bar = build_progress(config.ui.progress, name)
        try:
            variant = build_variant(specs[name], force=args.force, progress=callback)
        finally:
            if bar is not None:
                bar.close()
        print(f"{name}: {variant.module_path}")
    return 0


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("backends", parents=parents, help="list backends and their availability",
                       description="List the installed backends, whether each can run here "
                       "(and why not) and the devices of the built ones.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_backends)

    p = sub.add_parser("devices", parents=parents, help="list the devices of every built backend",
                       description="List the devices (index, registry, type, memory) that "
                       "each built backend sees.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_devices)

    p = sub.add_parser("build", parents=parents, help="build (or rebuild) backend variants",
                       description="Build the llama.cpp variant and native module of the named "
                       "backends (default: all installed), or take them from the cache.")
    p.add_argument("backends", nargs="*", metavar="BACKEND", help="cpu, vulkan, ...")
    p.add_argument("--force", action="store_true",
                   help="rebuild even if the cache has a build for the same inputs")
    p.set_defaults(func=_cmd_build)
