"""``llamakit perplexity MODEL FILE``: ``Model.perplexity``, printed as llama-perplexity does."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._errors import ConfigError
from ._common import cli_config, open_model, write
from ._options import add_config_flags

__all__ = ["register"]


def _cmd_perplexity(args: argparse.Namespace) -> int:
    config, rest = cli_config(args, args.words)
    if len(rest) != 1:
        raise ConfigError("usage: llamakit perplexity MODEL FILE (one text file)")
    try:
        with open(rest[0], encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {rest[0]}: {exc.strerror or exc}") from None
    c, chosen = config.context, config.context.model_fields_set
    # llama-perplexity's defaults (-c 512, -b 2048) unless the flags or config set them.
    n_ctx = c.n_ctx if "n_ctx" in chosen and c.n_ctx is not None else 512
    n_batch = c.n_batch if "n_batch" in chosen else 2048
    quiet = args.format == "json"

    def progress(chunk: int, n_chunk: int, running: float) -> None:
        if not quiet:
            sys.stderr.write(f"[{chunk}]{running:.4f},")
            sys.stderr.flush()
            if chunk == n_chunk:
                sys.stderr.write("\n")

    with open_model(config) as model:
        result = model.perplexity(text, n_ctx=n_ctx, n_batch=n_batch, n_ubatch=c.n_ubatch,
                                  n_chunks=args.chunks, n_threads=c.n_threads,
                                  progress=progress)
    if quiet:
        fields: dict[str, Any] = {
            "perplexity": result.perplexity, "uncertainty": result.uncertainty,
            "n_ctx": result.n_ctx, "n_tokens": result.n_tokens, "n_scored": result.n_scored,
            "chunks": result.chunks}
        write(json.dumps(fields) + "\n")
    else:
        write(f"Final estimate: PPL = {result.perplexity:.4f} +/- {result.uncertainty:.5f}\n")
    return 0


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "perplexity", parents=parents, help="perplexity of a model on a text file",
        description="Perplexity of MODEL on the text of FILE by llama.cpp's llama-perplexity "
        "method: chunks of --n-ctx tokens (default 512), the second half of each scored. "
        "Prints the running estimate per chunk on stderr and 'Final estimate: PPL = ... "
        "+/- ...' (or, with --format json, one JSON object) on stdout.")
    p.add_argument("words", nargs="*", metavar="[MODEL] FILE",
                   help="the .gguf file, then the text file")
    p.add_argument("--chunks", type=int, default=None,
                   help="score only the first N chunks (default: all)")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="text (default, llama-perplexity's final line) or json")
    add_config_flags(p, ("model", "context"))
    p.set_defaults(func=_cmd_perplexity)
