"""Skipping tests that would build a llama.cpp variant from cold, unless asked to.

The CPU variant takes about 6 minutes to build cold on a busy 2-core machine; the Vulkan
and RPC variants are further full llama.cpp builds (together about 27 minutes there),
which made a cold ``./dev.sh test`` take 39 minutes. Their tests now run when the variant
is already in the build cache (then they cost seconds), or when
``LLAMAKIT_TEST_VARIANTS`` names it (``vulkan,rpc``) or is ``all``; otherwise they are
skipped with a reason that says how to run them.
"""

from __future__ import annotations

import os

__all__ = ["require_variant"]

ENV = "LLAMAKIT_TEST_VARIANTS"


def _requested(name: str) -> bool:
    wanted = {part.strip().lower() for part in os.environ.get(ENV, "").split(",")}
    return bool(wanted & {"all", "1", name})


def _cached(name: str) -> bool:
    from .._build.variant import _paths
    from .._plugins.manager import get_plugin_host

    spec = get_plugin_host().backends().get(name)
    if spec is None:
        return False
    lib_dir, _, _ = _paths(spec)
    return (lib_dir / "build.json").is_file()


def require_variant(name: str) -> None:
    """Skip the calling test (or fixture) unless backend ``name``'s variant is built, or
    ``LLAMAKIT_TEST_VARIANTS`` asks for it to be built."""
    import pytest

    if _requested(name) or _cached(name):
        return
    pytest.skip(f"the {name} variant is not built yet and building it takes minutes; run "
                f"with {ENV}={name} (or all) to build and test it")
