"""``llamakit info MODEL``: a model's facts, context defaults, vocabulary, chat template and
tensor types."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from math import prod
from typing import TYPE_CHECKING, Any

from .._errors import ModelLoadError
from ._common import cli_config, open_model
from ._options import add_config_flags
from .info_defaults import model_defaults, print_defaults

if TYPE_CHECKING:
    from pathlib import Path

    from .._model import Model

__all__ = ["register"]

_FACTS = ("architecture", "description", "n_vocab", "n_ctx_train", "n_embd", "n_layer",
          "n_head", "n_head_kv", "n_params", "size", "ftype")


def _tensor_table(path: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """Every tensor (name, type, shape, bytes) from the GGUF header, and per type the
    count and bytes; split models are read shard by shard."""
    from .._gguf.ggml_types import GGML_TYPES
    from .._quantize.gguf_header import read_header, split_files

    first = read_header(path)
    tensors: list[dict[str, Any]] = []
    for header in [first, *[read_header(p) for p in split_files(first)[1:]]]:
        for t in header.tensors:
            info = GGML_TYPES[t.type] if 0 <= t.type < len(GGML_TYPES) else None
            if info is None or info.blck_size == 0:
                raise ModelLoadError(f"{path}: tensor {t.name} has unknown type {t.type}",
                                     path=path)
            n = prod(t.shape)
            tensors.append({"name": t.name, "type": info.name, "shape": list(t.shape),
                            "bytes": n // info.blck_size * info.type_size})
    by_type: dict[str, dict[str, int]] = {}
    counts = Counter(str(t["type"]) for t in tensors)
    for name, count in counts.most_common():
        by_type[name] = {"tensors": count,
                         "bytes": sum(int(t["bytes"]) for t in tensors if t["type"] == name)}
    return tensors, by_type


def _vocab(model: Model) -> dict[str, Any]:
    def token(which: str) -> dict[str, Any] | None:
        value = getattr(model, f"{which}_token")
        return None if value is None else {"id": value, "text": model.token_text(value)}

    return {"n_vocab": model.n_vocab, "type": model.metadata.get("tokenizer.ggml.model", ""),
            "add_bos": model.add_bos,
            **{name: token(name) for name in ("bos", "eos", "eot", "sep", "pad", "nl")},
            "n_special": len(model.special_tokens)}


# Facts a vocab-only load leaves at 0, and the GGUF key (after "<architecture>.") of each.
_SHAPE_KEYS = {"n_ctx_train": "context_length", "n_embd": "embedding_length",
               "n_layer": "block_count", "n_head": "attention.head_count",
               "n_head_kv": "attention.head_count_kv"}


def _facts(model: Model) -> dict[str, Any]:
    """``ModelInfo``'s fields; the shape from the GGUF keys, as the weights are not loaded."""
    info = model.info
    facts = {field: getattr(info, field) for field in _FACTS}
    metadata = model.metadata
    for field, key in _SHAPE_KEYS.items():
        raw = metadata.get(f"{info.architecture}.{key}")
        if not facts[field] and raw is not None:
            try:
                facts[field] = int(raw)
            except ValueError:  # a per-layer array: keep llama.cpp's rendering
                facts[field] = raw
    if not facts["description"]:
        facts["description"] = metadata.get("general.name", "")
    return facts


def _report(model: Model, args: argparse.Namespace) -> dict[str, Any]:
    tensors, by_type = _tensor_table(model.path)
    report: dict[str, Any] = {
        "path": str(model.path), "backend": model.backend, **_facts(model),
        "vocab": _vocab(model), "chat_template": model.chat_template(),
        "chat_templates": {key.rsplit(".", 1)[1]: value for key, value in model.metadata.items()
                           if key.startswith("tokenizer.chat_template.")},
        "tensor_types": by_type,
    }
    report["defaults"] = model_defaults(model, report)
    if args.tensors:
        report["tensors"] = tensors
    if args.metadata:
        report["metadata"] = model.metadata
    if args.tokenize is not None:
        ids = model.tokenize(args.tokenize, add_special=True, parse_special=args.parse_special)
        report["tokens"] = [{"id": i, "piece": model.token_to_piece(i, special=True)}
                            for i in ids]
    return report


def _print(report: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"{'path':12} {report['path']}")
    for field in _FACTS:
        value = report[field]
        if field == "size":
            value = f"{value} bytes ({value / 2**20:.2f} MiB)"
        print(f"{field:12} {value}")
    print_defaults(report["defaults"])
    vocab = report["vocab"]
    specials = ", ".join(f"{name}={vocab[name]['id']} {vocab[name]['text']!r}"
                         for name in ("bos", "eos", "eot", "sep", "pad", "nl") if vocab[name])
    print(f"{'vocab':12} {vocab['n_vocab']} tokens ({vocab['type'] or '?'}), "
          f"{vocab['n_special']} control tokens, add_bos={vocab['add_bos']}")
    print(f"{'special':12} {specials or '-'}")
    template = report["chat_template"]
    if template is None:
        print(f"{'chat':12} no chat template in the file (chat uses llama.cpp's default, chatml)")
    elif args.chat_template_text:
        print(f"{'chat':12} tokenizer.chat_template ({len(template)} characters):")
        print(template)
    else:
        first = template.strip().splitlines()[0] if template.strip() else ""
        print(f"{'chat':12} tokenizer.chat_template, {len(template)} characters: "
              f"{first[:60]!r}{'...' if len(template) > 60 else ''} (--template prints it)")
    for name in report["chat_templates"]:
        print(f"{'':12} tokenizer.chat_template.{name}")
    types = ", ".join(f"{name} {v['tensors']} ({v['bytes'] / 2**20:.2f} MiB)"
                      for name, v in report["tensor_types"].items())
    print(f"{'tensors':12} {sum(v['tensors'] for v in report['tensor_types'].values())}: {types}")
    for t in report.get("tensors", []):
        shape = "x".join(map(str, t["shape"]))
        print(f"  {t['name']:40} {t['type']:8} {shape:>20} {t['bytes']:>12}")
    for key, value in report.get("metadata", {}).items():
        print(f"  {key} = {value[:200]}")
    for token in report.get("tokens", []):
        print(f"  {token['id']:>8} {token['piece']!r}")


def _cmd_info(args: argparse.Namespace) -> int:
    config, _ = cli_config(args, model=args.model)
    with open_model(config, vocab_only=True) as model:
        report = _report(model, args)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        _print(report, args)
    return 0


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("info", parents=parents, help="show a model's facts",
                       description="Show a GGUF model's shape, vocabulary, chat template and "
                       "tensor types (the weights are not loaded).")
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="the .gguf file (default: -m, [model] path of the config)")
    p.add_argument("--metadata", action="store_true", help="print every GGUF key")
    p.add_argument("--tensors", action="store_true",
                   help="print every tensor's type, shape and size")
    p.add_argument("--template", dest="chat_template_text", action="store_true",
                   help="print the whole chat template")
    p.add_argument("--tokenize", metavar="TEXT", default=None,
                   help="print the token ids and pieces of TEXT")
    p.add_argument("--parse-special", action="store_true",
                   help="with --tokenize: turn special-token text into its token")
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    add_config_flags(p, ["model"], only=[("model", "path")])
    p.set_defaults(func=_cmd_info)
