"""What the commands share: their config, the model and context it describes, output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._config import Config
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
    """Load the model of ``config`` as ``from_config`` does, with a progress bar as ``[ui]
    progress`` says."""
    from .._from_config import model_from_config

    return model_from_config(config, vocab_only=vocab_only, missing=(
        "no model given: pass MODEL (a .gguf file), -m/--model, [model] path in the "
        "--config file, or LLAMAKIT_MODEL"))


def new_context(model: Model, config: Config, **overrides: Any) -> Context:
    """A context with ``[context]``, ``[sampling]`` and ``[chat]`` of ``config``, as
    ``from_config`` makes it; ``overrides`` replace ``new_context`` arguments."""
    from .._from_config import context_from_config

    return context_from_config(model, config, **overrides)


def write(text: str, *, err: bool = False) -> None:
    """Write and flush (streamed output must appear as it is produced)."""
    stream = sys.stderr if err else sys.stdout
    stream.write(text)
    stream.flush()
