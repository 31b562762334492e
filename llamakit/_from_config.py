"""``from_config``: a ready model and context from a TOML file."""

from __future__ import annotations

import os
from typing import Any

from ._config import Config, load_config
from ._context import Context
from ._context_knobs import knob_arguments
from ._errors import ConfigError, GrammarError, SamplerError
from ._grammar import Grammar
from ._model import Model, load_model
from ._sampling import SamplingParams

__all__ = ["from_config"]


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


def context_from_config(model: Model, config: Config) -> Context:
    """A context over ``model`` with the ``[context]`` and ``[sampling]`` settings."""
    c, s = config.context, config.sampling
    ctx = model.new_context(n_ctx=c.n_ctx, n_batch=c.n_batch, n_ubatch=c.n_ubatch,
                            n_threads=c.n_threads, n_threads_batch=c.n_threads_batch,
                            embeddings=c.embeddings, seed=c.seed, n_seq_max=c.n_seq_max,
                            kv_unified=c.kv_unified, **knob_arguments(c))
    ctx.sampling = sampling_from_config(model, config)
    ctx.max_new_tokens = s.max_new_tokens
    ctx.stop = list(s.stop)
    ctx.chat_config = config.chat
    return ctx


def from_config(path: str | os.PathLike[str] | None = None,
                **overrides: Any) -> tuple[Model, Context]:
    """Load the model and create the context a config file describes.

    ``overrides`` are keyword overrides by section, as for ``load_config``. Returns
    ``(model, context)``; the context's ``generate``/``stream`` defaults come from
    ``[sampling]``. Closing the model closes the context too.
    """
    config = load_config(path, **overrides)
    m = config.model
    if m.path is None:
        raise ConfigError("no model to load (model.path is unset): set [model] path in the "
                          "config file, "
                          "LLAMAKIT_MODEL, or model={'path': ...}", path=config.source,
                          key="model.path")
    model = load_model(m.path, backend=config.backend.name, n_gpu_layers=m.n_gpu_layers,
                       main_gpu=m.main_gpu, split_mode=m.split_mode,
                       tensor_split=m.tensor_split, use_mmap=m.use_mmap,
                       use_mlock=m.use_mlock, vocab_only=m.vocab_only,
                       backend_settings=config.backends)
    try:
        return model, context_from_config(model, config)
    except BaseException:
        model.close()
        raise
