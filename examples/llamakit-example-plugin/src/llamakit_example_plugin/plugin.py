"""The hook implementations: what the entry point ``llamakit-example-plugin`` loads.

Each function is named after a hookspec (``llamakit._plugins.hookspecs``), marked with
``@llamakit.hookimpl``, takes no parameters and returns a list.
"""

from __future__ import annotations

from collections.abc import Sequence

from llamakit import (
    ChatTemplate,
    CommandSpec,
    ModelResolver,
    QuantizationRecipe,
    SamplerSpec,
    hookimpl,
)

from . import resolver, stats
from .recipe import AttentionQ8
from .sampler import no_repeat_ngram
from .template import EXAMPLE_PLAIN

__all__ = ["llamakit_register_chat_templates", "llamakit_register_commands",
           "llamakit_register_model_resolvers", "llamakit_register_quantizers",
           "llamakit_register_samplers"]


@hookimpl
def llamakit_register_samplers() -> Sequence[SamplerSpec]:
    return [SamplerSpec("no_repeat_ngram", no_repeat_ngram,
                        "bans tokens that would repeat an n-gram of the text (n=3)")]


@hookimpl
def llamakit_register_chat_templates() -> Sequence[ChatTemplate]:
    # No `matches`: the template applies only when asked for by name.
    return [ChatTemplate("example-plain", source=EXAMPLE_PLAIN,
                         description="### User: / ### Assistant: plain-text turns")]


@hookimpl
def llamakit_register_quantizers() -> Sequence[QuantizationRecipe]:
    return [AttentionQ8()]


@hookimpl
def llamakit_register_commands() -> Sequence[CommandSpec]:
    return [CommandSpec("example-stats", "show a GGUF model's tensors by type: count, "
                        "parameters, size, bits per weight", stats.configure, stats.run)]


@hookimpl
def llamakit_register_model_resolvers() -> Sequence[ModelResolver]:
    return [ModelResolver("models-dir", resolver.resolve,
                          "models-dir:NAME: NAME.gguf in the folders of "
                          "$LLAMAKIT_EXAMPLE_MODELS")]
