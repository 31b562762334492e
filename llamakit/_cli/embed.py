"""``llamakit embed``: embeddings of texts, as JSON or one line per text."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._errors import ConfigError
from ._common import cli_config, new_context, open_model, write
from ._options import add_config_flags, read_stdin_lines

__all__ = ["register"]


def _cmd_embed(args: argparse.Namespace) -> int:
    config, texts = cli_config(args, args.words)
    if args.file is not None:
        try:
            with open(args.file, encoding="utf-8") as handle:
                texts += [line.rstrip("\r\n") for line in handle if line.strip()]
        except OSError as exc:
            raise ConfigError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    if not texts:
        texts = read_stdin_lines()
    if not texts:
        raise ConfigError("no texts to embed: give TEXT arguments, --file FILE, or lines on "
                          "stdin")
    overrides: dict[str, Any] = {"embeddings": True, "pooling": args.pooling}
    if "n_seq_max" not in config.context.model_fields_set:
        # Pack several texts into each decode (one KV buffer shared by them, see
        # Context.embeddings) unless --n-seq-max or the config says otherwise.
        overrides["n_seq_max"] = max(1, min(len(texts), 64, config.context.n_batch))
    with open_model(config) as model, new_context(model, config, **overrides) as ctx:
        # Native pooling (the context's) when the model or --pooling sets one; for a
        # model without it, Context.embeddings pools in Python (mean by default).
        pooling = None if ctx.pooling != "none" else (args.pooling or "mean")
        vectors = ctx.embeddings(texts, pooling=pooling, normalize=args.normalize)
    rows = vectors.tolist()
    if args.format == "json":
        write(json.dumps([{"index": i, "text": text, "embedding": row}
                          for i, (text, row) in enumerate(zip(texts, rows, strict=True))])
              + "\n")
    else:
        for row in rows:
            write(" ".join(f"{x:.7g}" for x in row) + "\n")
    return 0


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "embed", parents=parents, help="print embeddings of texts",
        description="Embed each TEXT (or each line of --file, or of stdin) with MODEL and "
        "print the vectors: JSON (a list of {index, text, embedding}) or, with --format "
        "lines, one line of numbers per text.")
    p.add_argument("words", nargs="*", metavar="[MODEL] TEXT",
                   help="the .gguf file, then the texts")
    p.add_argument("-f", "--file", default=None, help="embed each non-empty line of FILE")
    p.add_argument("--pooling", choices=["mean", "cls", "last"], default=None,
                   help="how token vectors become one per text (default: the model's own, "
                   "else mean)")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True,
                   help="scale each vector to unit length (default: yes)")
    p.add_argument("--format", choices=["json", "lines"], default="json",
                   help="json (default) or lines: the numbers of one text per line")
    add_config_flags(p, ("model", "context"))
    p.set_defaults(func=_cmd_embed)
