"""``llamakit quantize SRC DST TYPE``: llama-quantize's options through ``llamakit.quantize``."""

from __future__ import annotations

import argparse
from typing import Any

from .._errors import QuantizeError
from ._common import cli_config

__all__ = ["register"]


def _cmd_quantize(args: argparse.Namespace) -> int:
    from .._quantize.api import quantization_recipes, quantization_types, quantize

    config, _ = cli_config(args)
    backend = config.backend.name if config.backend.name != "auto" else "cpu"
    if args.list:
        from .._quantize.notes import quantize_notes

        # The main type's bits per weight cannot tell the _S/_M/_L mixes apart: lead with
        # what llama-quantize lists (size and ppl increase on a reference model).
        notes = quantize_notes()
        for qtype in quantization_types(backend):
            imatrix = "  (needs --imatrix)" if qtype.requires_imatrix else ""
            note = notes.get(qtype.name, "")
            print(f"{qtype.name:10} {note:34} {qtype.description} (main type "
                  f"{qtype.ggml_type}, {qtype.bits_per_weight:.4f} bpw){imatrix}")
        for name, recipe in sorted(quantization_recipes().items()):
            print(f"recipe {name}: {recipe.description}")
        return 0
    if args.dry_run and args.type is None:  # `quantize SRC TYPE --dry-run`: no destination
        args.dst, args.type = None, args.dst
    if args.src is None or args.type is None or (args.dst is None and not args.dry_run):
        raise QuantizeError("usage: llamakit quantize SRC DST TYPE (or SRC TYPE --dry-run, "
                            "or --list)")
    tensor_types = []
    for item in args.tensor_type:
        pattern, sep, type_name = item.rpartition("=")
        if not sep:
            raise QuantizeError(f"--tensor-type takes PATTERN=TYPE, got {item!r}")
        tensor_types.append((pattern, type_name))
    result = quantize(
        args.src, args.dst, args.type, nthread=args.nthread,
        allow_requantize=args.allow_requantize,
        quantize_output_tensor=not args.leave_output_tensor,
        output_tensor_type=args.output_tensor_type,
        token_embedding_type=args.token_embedding_type, pure=args.pure,
        keep_split=args.keep_split, imatrix=args.imatrix, tensor_types=tensor_types,
        dry_run=args.dry_run, progress="never" if args.no_progress else config.ui.progress,
        recipe=args.recipe, backend=backend)
    where = "predicted" if result.dry_run else "in " + ", ".join(map(str, result.files))
    print(f"{result.ftype}: {result.src_size / 2**20:.2f} MiB -> {result.size / 2**20:.2f} MiB "
          f"{where} ({result.bits_per_weight:.2f} bits per weight, {result.n_tensors} tensors, "
          f"{result.elapsed_s:.2f} s, {result.nthread} threads)")
    return 0


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("quantize", parents=parents,
                       help="quantize a GGUF model (llama-quantize's options)",
                       description="Quantize SRC to TYPE into DST (backend: cpu unless "
                       "--backend); see --list for the types.")
    p.add_argument("src", nargs="?", metavar="SRC")
    p.add_argument("dst", nargs="?", metavar="DST")
    p.add_argument("type", nargs="?", metavar="TYPE", help="Q4_K_M, Q8_0, ... (see --list)")
    p.add_argument("--list", action="store_true", help="list types and recipes, then exit")
    p.add_argument("--nthread", type=int, default=None, help="threads (default: all CPUs)")
    p.add_argument("--allow-requantize", action="store_true",
                   help="allow a source that is already quantized")
    p.add_argument("--leave-output-tensor", action="store_true",
                   help="keep output.weight unquantized")
    p.add_argument("--output-tensor-type", default=None, metavar="GGML_TYPE")
    p.add_argument("--token-embedding-type", default=None, metavar="GGML_TYPE")
    p.add_argument("--tensor-type", action="append", default=[], metavar="PATTERN=TYPE",
                   help="quantize tensors matching the regex to TYPE (repeatable)")
    p.add_argument("--pure", action="store_true", help="no k-quant mixes")
    p.add_argument("--keep-split", action="store_true", help="one output per input shard")
    p.add_argument("--imatrix", default=None, help="importance matrix file")
    p.add_argument("--recipe", default=None, help="a registered quantization recipe")
    p.add_argument("--dry-run", action="store_true", help="predict the size, write nothing")
    p.add_argument("--no-progress", action="store_true", help="same as --progress never")
    p.set_defaults(func=_cmd_quantize)
