"""The hooks third-party packages implement.

A plugin is any module or object with functions marked ``@llamakit.hookimpl`` and named
like the specs below; packages expose it through an entry point in the ``llamakit``
group, named after their distribution. Hooks discover: they return objects that then
behave by themselves; no hook is called on a per-token path.

Every hook takes no parameters and returns a sequence (a list) of objects, each with a
``name``. What happens when a plugin breaks the contract (raises, returns the wrong type,
reuses a name) is the error policy in ``docs/plugins.md``: the offending plugin's items are
skipped with a :class:`llamakit.PluginWarning` naming it, and the others keep working.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from .._backend_spec import BackendSpec
from .._chat.template import ChatTemplate
from .._command_spec import CommandSpec
from .._quantize.plan import QuantizationRecipe
from .._resolver_spec import ModelResolver
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
        across all plugins (a duplicate is skipped with a ``PluginWarning`` naming both
        plugins; the first one in precedence order keeps the name).
        """

    @hookspec
    def llamakit_register_samplers(self) -> Sequence[SamplerSpec]:  # type: ignore[empty-body]
        """Return the named Python samplers this plugin provides.

        Parameters: none.

        Returns: a sequence of :class:`llamakit.SamplerSpec` (``name``, ``factory(model,
        **params)`` returning a :class:`llamakit.Sampler`, ``description``). Each name is
        usable in ``SamplerChain.add(name, **params)``, the ``samplers=`` keyword and the
        ``[sampling] samplers`` config key. Names must be unique across all plugins and
        differ from llama.cpp's stage names (either is skipped with a ``PluginWarning``
        naming the plugins).
        """

    @hookspec
    def llamakit_register_chat_templates(self) -> Sequence[ChatTemplate]:  # type: ignore[empty-body]
        """Return the named chat templates this plugin provides.

        Parameters: none.

        Returns: a sequence of :class:`llamakit.ChatTemplate`, each with Jinja ``source``
        (rendered in the sandbox) or a Python ``render`` callable. ``template="<name>"``
        selects one; one whose ``matches(metadata)`` is true for a model replaces that
        model's own template (``docs/architecture.md`` has the resolution order). Names must
        be unique across all plugins (a duplicate is skipped with a ``PluginWarning`` naming
        both plugins).
        """

    @hookspec
    def llamakit_register_quantizers(self) -> Sequence[QuantizationRecipe]:  # type: ignore[empty-body]
        """Return the quantization recipes this plugin provides.

        Parameters: none.

        Returns: a sequence of objects implementing :class:`llamakit.QuantizationRecipe`
        (``name``, ``description``, ``prepare(plan) -> plan``), used by
        ``llamakit.quantize(..., recipe=name)``; each ``name`` must be unique across all
        plugins (a duplicate is skipped with a ``PluginWarning`` naming both plugins).
        """

    @hookspec
    def llamakit_register_commands(self) -> Sequence[CommandSpec]:  # type: ignore[empty-body]
        """Return the ``llamakit`` subcommands this plugin provides.

        Parameters: none.

        Returns: a sequence of :class:`llamakit.CommandSpec` (``name``, ``help``,
        ``configure(parser)`` adding the command's arguments to its
        ``argparse.ArgumentParser``, ``run(args)`` returning the exit status or None for 0).
        ``llamakit NAME ...`` runs it. A name already taken by a built-in command is skipped
        with a warning naming the plugin; a duplicate across plugins is skipped with a
        ``PluginWarning`` naming both plugins.
        """

    @hookspec
    def llamakit_register_model_resolvers(self) -> Sequence[ModelResolver]:  # type: ignore[empty-body]
        """Return the model resolvers this plugin provides.

        Parameters: none.

        Returns: a sequence of :class:`llamakit.ModelResolver` (``name``, ``resolve(reference)``
        returning the local GGUF paths for a reference of its kind, or None for any other,
        ``description``). ``load_model("...")`` asks every resolver, in plugin precedence
        order, before it treats its argument as a path; the first that claims it wins.
        Names must be unique across all plugins (a duplicate is skipped with a
        ``PluginWarning`` naming both plugins).
        """
