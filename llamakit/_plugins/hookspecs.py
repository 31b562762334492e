"""The hooks third-party packages implement.

A plugin is any module or object with functions marked ``@llamakit.hookimpl`` and named
like the specs below; packages expose it through an entry point in the ``llamakit``
group, named after their distribution. Hooks discover: they return objects that then
behave by themselves; no hook is called on a per-token path.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from .._backend_spec import BackendSpec

__all__ = ["hookimpl", "hookspec", "Hookspecs"]

hookspec = pluggy.HookspecMarker("llamakit")
hookimpl = pluggy.HookimplMarker("llamakit")


class Hookspecs:
    """Namespace of llamakit's hookspecs."""

    @hookspec
    def llamakit_register_backends(self) -> Sequence[BackendSpec]:  # type: ignore[empty-body]
        """Return the compute backends this plugin provides.

        Parameters: none.

        Returns: a sequence of :class:`llamakit.BackendSpec`; each ``name`` must be unique
        across all plugins (a duplicate is a ``PluginError`` naming both plugins).
        """
