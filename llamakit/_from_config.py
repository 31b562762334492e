"""``from_config``: a ready model and context from a TOML file; the one config->call path
(the CLI's commands use it too)."""

from __future__ import annotations

import os
from typing import Any

from ._config import Config, load_config
from ._context import Context
from ._context_text import stop_strings
from ._engine import Engine
from ._errors import ConfigError, GrammarError, SamplerError
from ._grammar import Grammar
from ._model import LoadOptions, Model, open_model
from ._sampling import SamplingParams

__all__ = ["context_from_config", "engine_from_config", "from_config", "model_from_config",
           "sampling_from_config"]


# [sampling] keys that are not sampling keywords, or need converting first.
_NOT_KEYWORDS = frozenset({"max_new_tokens", "stop", "grammar_file"})


def sampling_from_config(model: Model, config: Config) -> SamplingParams:
    """The ``[sampling]`` settings that the config sets (not its defaults, so that the
    model's GGUF recommendations still apply under them), as sampling keywords."""
    section = config.sampling
    chosen: dict[str, Any] = {}
    for name in sorted(section.model_fields_set - _NOT_KEYWORDS):
        chosen[name] = getattr(section, name)
    grammar_file = section.grammar_file
    if grammar_file is not None:
        origin = config.origin("sampling.grammar_file")
        if not grammar_file.is_absolute() and origin.startswith("config file") \
                and config.source is not None:
            grammar_file = config.source.parent / grammar_file
        if chosen.get("grammar") is not None:
            raise ConfigError("set sampling.grammar or sampling.grammar_file, not both",
                              path=config.source, key="sampling.grammar_file")
        chosen["grammar"] = Grammar.from_file(grammar_file)
    try:
        return SamplingParams.from_kwargs(chosen, model=model, where="[sampling]")
    except GrammarError:
        raise
    except (SamplerError, TypeError) as exc:
        raise ConfigError(f"[sampling]: {exc}", path=config.source) from exc


def model_from_config(config: Config, *, vocab_only: bool = False,
                      missing: str | None = None) -> Model:
    """The model of ``config`` (``[model]``, ``[backend]``, ``[backends.*]``, ``[ui]``);
    ``vocab_only`` loads only its vocabulary, ``missing`` is the error when none is named."""
    options = (LoadOptions.from_config(config, vocab_only=vocab_only) if missing is None
               else LoadOptions.from_config(config, vocab_only=vocab_only, missing=missing))
    return open_model(options)


def context_from_config(model: Model, config: Config, **overrides: Any) -> Context:
    """A context over ``model`` with the ``[context]``, ``[sampling]`` and ``[chat]``
    settings; ``overrides`` replace ``new_context`` arguments (``pooling``, ...)."""
    ctx = model.new_context(**{**config.context.model_dump(), **overrides})
    try:
        ctx.sampling = sampling_from_config(model, config)
        ctx.max_new_tokens = config.sampling.max_new_tokens
        ctx.stop = stop_strings(config.sampling.stop)
        ctx.chat_config = config.chat
    except BaseException:
        ctx.close()
        raise
    return ctx


def from_config(path: str | os.PathLike[str] | None = None,
                **overrides: Any) -> tuple[Model, Context]:
    """Load the model and create the context a config file describes.

    ``overrides`` are keyword overrides by section, as for ``load_config``. Returns
    ``(model, context)``; the context's ``generate``/``stream`` defaults come from
    ``[sampling]``. Closing the model closes the context too.
    """
    config = load_config(path, **overrides)
    model = model_from_config(config)
    try:
        return model, context_from_config(model, config)
    except BaseException:
        model.close()
        raise


def engine_from_config(model: Model, config: Config | None = None) -> Engine:
    """An ``Engine`` over ``model`` with the ``[engine]`` settings, the ``[context]`` ones
    that apply to its one context (all but ``n_ctx`` and ``n_seq_max``, which the engine
    sets from ``[engine]``) and
    the ``[sampling]`` and ``[chat]`` defaults of its requests. ``config`` defaults to the
    ambient one (``load_config()``)."""
    if config is None:
        config = load_config()
    context = config.context.model_dump(exclude={"n_ctx", "n_seq_max"})
    engine = Engine(model, **config.engine.model_dump(), **context)
    try:
        ctx = engine._ctx
        ctx.sampling = sampling_from_config(model, config)
        ctx.max_new_tokens = config.sampling.max_new_tokens
        ctx.stop = stop_strings(config.sampling.stop)
        ctx.chat_config = config.chat
    except BaseException:
        engine.close(drain=False)
        raise
    return engine
