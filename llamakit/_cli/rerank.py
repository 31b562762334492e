"""``llamakit rerank MODEL QUERY DOC...``: documents scored against a query by a reranking
model, best first."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._errors import ConfigError
from ._common import cli_config, new_context, open_model, write
from ._options import add_config_flags, read_stdin_lines

__all__ = ["register"]


def _cmd_rerank(args: argparse.Namespace) -> int:
    config, words = cli_config(args, args.words)
    if not words:
        raise ConfigError("no query: give MODEL QUERY [DOCUMENT...]")
    query, documents = words[0], words[1:]
    if args.file is not None:
        try:
            with open(args.file, encoding="utf-8") as handle:
                documents += [line.rstrip("\r\n") for line in handle if line.strip()]
        except OSError as exc:
            raise ConfigError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    if not documents:
        documents = read_stdin_lines()
    if not documents:
        raise ConfigError("no documents to rerank: give DOCUMENT arguments, --file FILE, or "
                          "lines on stdin")
    overrides: dict[str, Any] = {"embeddings": True}
    if "n_seq_max" not in config.context.model_fields_set:
        overrides["n_seq_max"] = max(1, min(len(documents), 64, config.context.n_batch))
    with open_model(config) as model, new_context(model, config, **overrides) as ctx:
        result = ctx.rerank(query, documents, top_n=args.top_n)
    if args.json:
        write(json.dumps({"query": query, "scores": result.scores,
                          "ranking": result.ranking,
                          "results": [{"index": i, "score": result.scores[i],
                                       "document": documents[i]} for i in result.ranking]},
                         ensure_ascii=False) + "\n")
    else:
        for index, score, document in result.top(documents):
            write(f"{score:.4f}\t{index}\t{document}\n")
    return 0


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "rerank", parents=parents, help="score documents against a query (reranking model)",
        description="Score each DOCUMENT (or each line of --file, or of stdin) against QUERY "
        "with a reranking MODEL (pooling_type rank) and print them best first: score, "
        "index, document, tab-separated; --json also gives the scores in document order.")
    p.add_argument("words", nargs="*", metavar="[MODEL] QUERY DOCUMENT",
                   help="the .gguf file, the query, then the documents")
    p.add_argument("-f", "--file", default=None, help="rerank each non-empty line of FILE")
    p.add_argument("--top-n", type=int, default=None, metavar="N",
                   help="print only the N best documents")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_config_flags(p, ("model", "context"))
    p.set_defaults(func=_cmd_rerank)
