"""What the commands share: their config, the model and context it describes, output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._config import Config
from .._errors import ConfigError
from .._progress import set_default_mode
from ._options import config_from_args, flag_values, split_model_argument

if TYPE_CHECKING:
    from .._context import Context
    from .._model import Model

__all__ = ["cli_config", "new_context", "open_model", "write"]


def cli_config(args: argparse.Namespace, words: Sequence[str] = (), *,
               model: str | None = None) -> tuple[Config, list[str]]:
    """The command's config (``--config``/``$LLAMAKIT_CONFIG`` < environment < flags) and
    its positional words less the model, when the first of them names one (see
    ``split_model_argument``); ``model`` is a MODEL argument given on its own. Also makes
    ``[ui] progress`` the process default."""
    config = config_from_args(args)
    rest = list(words)
    if model is None:
        model, rest = split_model_argument(
            words, model_flag=("model", "path") in flag_values(args),
            config_has_model=config.model.path is not None)
    if model is not None:
        config = config_from_args(args, extra={("model", "path"): ("MODEL", model)})
    set_default_mode(config.ui.progress)
    return config, rest


def open_model(config: Config, *, vocab_only: bool = False) -> Model:
    """Load the model of ``config`` (``[model]``, ``[backend]``, ``[backends.*]``) with a
    progress bar as ``[ui] progress`` says."""
    from .._model import load_model

    m = config.model
    if m.path is None:
        raise ConfigError("no model given: pass MODEL (a .gguf file), -m/--model, [model] "
                          "path in the --config file, or LLAMAKIT_MODEL", key="model.path")
    return load_model(m.path, backend=config.backend.name, n_gpu_layers=m.n_gpu_layers,
                      main_gpu=m.main_gpu, split_mode=m.split_mode, tensor_split=m.tensor_split,
                      use_mmap=m.use_mmap, use_mlock=m.use_mlock,
                      vocab_only=vocab_only or m.vocab_only, backend_settings=config.backends,
                      progress=config.ui.progress)


def new_context(model: Model, config: Config, **overrides: Any) -> Context:
    """A context with ``[context]``, ``[sampling]`` and ``[chat]`` of ``config`` (as
    ``from_config`` makes it); ``overrides`` replace ``new_context`` arguments."""
    from .._context_knobs import knob_arguments
    from .._from_config import sampling_from_config

    c = config.context
    arguments: dict[str, Any] = {
        "n_ctx": c.n_ctx, "n_batch": c.n_batch, "n_ubatch": c.n_ubatch,
        "n_threads": c.n_threads, "n_threads_batch": c.n_threads_batch,
        "embeddings": c.embeddings, "seed": c.seed, "n_seq_max": c.n_seq_max,
        "kv_unified": c.kv_unified, **knob_arguments(c), **overrides}
    ctx = model.new_context(**arguments)
    try:
        ctx.sampling = sampling_from_config(model, config)
        ctx.max_new_tokens = config.sampling.max_new_tokens
        ctx.stop = list(config.sampling.stop)
        ctx.chat_config = config.chat
    except BaseException:
        ctx.close()
        raise
    return ctx


def write(text: str, *, err: bool = False) -> None:
    """Write and flush (streamed output must appear as it is produced)."""
    stream = sys.stderr if err else sys.stdout
    stream.write(text)
    stream.flush()
