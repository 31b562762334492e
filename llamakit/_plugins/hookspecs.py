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
from .._chat.template import ChatTemplate
from .._quantize.plan import QuantizationRecipe
from .._sampler_protocol import SamplerSpec

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

    @hookspec
    def llamakit_register_samplers(self) -> Sequence[SamplerSpec]:  # type: ignore[empty-body]
        """Return the named Python samplers this plugin provides.

        Parameters: none.

        Returns: a sequence of :class:`llamakit.SamplerSpec` (``name``, ``factory(model,
        **params)`` returning a :class:`llamakit.Sampler`, ``description``). Each name is
        usable in ``SamplerChain.add(name, **params)``, the ``samplers=`` keyword and the
        ``[sampling] samplers`` config key. Names must be unique across all plugins and
        differ from llama.cpp's stage names (either is a ``PluginError`` naming the plugins).
        """

    @hookspec
    def llamakit_register_chat_templates(self) -> Sequence[ChatTemplate]:  # type: ignore[empty-body]
        """Return the named chat templates this plugin provides.

        Parameters: none.

        Returns: a sequence of :class:`llamakit.ChatTemplate`, each with Jinja ``source``
        (rendered in the sandbox) or a Python ``render`` callable. ``template="<name>"``
        selects one; one whose ``matches(metadata)`` is true for a model replaces that
        model's own template (``docs/architecture.md`` has the resolution order). Names must
        be unique across all plugins (a duplicate is a ``PluginError`` naming both plugins).
        """

    @hookspec
    def llamakit_register_quantizers(self) -> Sequence[QuantizationRecipe]:  # type: ignore[empty-body]
        """Return the quantization recipes this plugin provides.

        Parameters: none.

        Returns: a sequence of objects implementing :class:`llamakit.QuantizationRecipe`
        (``name``, ``description``, ``prepare(plan) -> plan``), used by
        ``llamakit.quantize(..., recipe=name)``; each ``name`` must be unique across all
        plugins (a duplicate is a ``PluginError`` naming both plugins).
        """
