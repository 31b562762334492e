"""The ``llamakit`` command line (also ``python -m llamakit``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ._errors import LlamakitError

__all__ = ["main"]


def _cmd_backends(args: argparse.Namespace) -> int:
    from ._backends import backends

    for status in backends():
        mark = "yes" if status.available else "no "
        print(f"{status.name:10} available={mark} priority={status.priority:<3} "
              f"plugin={status.plugin}  {status.reason}")
        for device in status.devices:
            print(f"    [{device.index}] {device.name} ({device.type}): {device.description}, "
                  f"{device.memory_total / 2**30:.1f} GiB")
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    from ._backends import devices

    for backend, found in devices().items():
        for d in found:
            print(f"{backend:10} [{d.index}] {d.registry or '-':8} {d.type:5} {d.name}: "
                  f"{d.description} ({d.memory_free / 2**30:.1f}/{d.memory_total / 2**30:.1f} "
                  "GiB free)")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from ._build.variant import build_variant
    from ._plugins.manager import get_plugin_host

    specs = get_plugin_host().backends()
    names = args.backend or sorted(specs)
    for name in names:
        if name not in specs:
            raise LlamakitError(f"no backend named {name!r} (installed: {', '.join(specs)})")
        variant = build_variant(specs[name], force=args.force)
        print(f"{name}: {variant.module_path}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from ._model import load_model

    with load_model(args.model, backend=args.backend, vocab_only=True) as model:
        info = model.info
        for field in ("architecture", "description", "n_vocab", "n_ctx_train", "n_embd",
                      "n_layer", "n_head", "n_head_kv", "n_params", "size", "ftype"):
            print(f"{field:12} {getattr(info, field)}")
        print(f"{'bos/eos/eot':12} {model.bos_token}/{model.eos_token}/{model.eot_token}")
        if args.metadata:
            for key, value in model.metadata.items():
                print(f"  {key} = {value[:200]}")
    return 0


def _generate(model_path: str, args: argparse.Namespace) -> int:
    from ._model import load_model

    with load_model(model_path, backend=args.backend) as model, \
            model.new_context(n_ctx=args.n_ctx) as ctx:
        stream = ctx.stream(args.prompt, max_new_tokens=args.max_new_tokens,
                            temperature=args.temperature, seed=args.seed)
        sys.stdout.write(args.prompt)
        for piece in stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        result = stream.result
        if result is not None:
            t = result.timings
            print(f"[{result.finish_reason}; {t.prompt_tokens} prompt tokens, "
                  f"{t.generated_tokens} generated at {t.generated_tokens_per_s:.1f} tokens/s; "
                  f"backend {model.backend}]", file=sys.stderr)
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    return _generate(args.model, args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import DEMO_QUESTIONS, demo_model, demo_model_record

    record = demo_model_record()
    print(f"llamakit demo: a {record['n_params'] / 1e6:.1f}M-parameter llama trained by "
          "tools/train_demo.py to add, subtract and multiply small numbers, convert units "
          "and spell words backwards; greedy replies through Context.chat.", file=sys.stderr)
    questions = [args.prompt] if args.prompt else list(DEMO_QUESTIONS)
    with demo_model(backend=args.backend) as model, \
            model.new_context(n_ctx=args.n_ctx) as ctx:
        tokens, seconds = 0, 0.0
        for question in questions:
            print(f"> {question}")
            stream = ctx.chat_stream([{"role": "user", "content": question}],
                                     max_new_tokens=args.max_new_tokens,
                                     temperature=args.temperature, seed=args.seed)
            for piece in stream:
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            if stream.result is not None:
                timings = stream.result.generation.timings
                tokens += timings.generated_tokens
                seconds += timings.generated_ms / 1000
        print(f"[{tokens} tokens generated at {tokens / max(seconds, 1e-9):.0f} tokens/s; "
              f"backend {model.backend}]", file=sys.stderr)
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    from ._quantize.api import quantization_recipes, quantization_types, quantize

    backend = args.backend or "cpu"
    if args.list:
        for qtype in quantization_types(backend):
            imatrix = "  (needs --imatrix)" if qtype.requires_imatrix else ""
            print(f"{qtype.name:10} {qtype.bits_per_weight:7.4f} bpw  {qtype.description}{imatrix}")
        for name, recipe in sorted(quantization_recipes().items()):
            print(f"recipe {name}: {recipe.description}")
        return 0
    if args.dry_run and args.type is None:  # `quantize SRC TYPE --dry-run`: no destination
        args.dst, args.type = None, args.dst
    if args.src is None or args.type is None or (args.dst is None and not args.dry_run):
        raise LlamakitError("usage: llamakit quantize SRC DST TYPE (or --list)")
    tensor_types = []
    for item in args.tensor_type:
        pattern, sep, type_name = item.rpartition("=")
        if not sep:
            raise LlamakitError(f"--tensor-type takes PATTERN=TYPE, got {item!r}")
        tensor_types.append((pattern, type_name))
    result = quantize(
        args.src, args.dst, args.type, nthread=args.nthread,
        allow_requantize=args.allow_requantize,
        quantize_output_tensor=not args.leave_output_tensor,
        output_tensor_type=args.output_tensor_type,
        token_embedding_type=args.token_embedding_type, pure=args.pure,
        keep_split=args.keep_split, imatrix=args.imatrix, tensor_types=tensor_types,
        dry_run=args.dry_run, progress=not args.no_progress, recipe=args.recipe,
        backend=backend)
    where = "predicted" if result.dry_run else "in " + ", ".join(map(str, result.files))
    print(f"{result.ftype}: {result.src_size / 2**20:.2f} MiB -> {result.size / 2**20:.2f} MiB "
          f"{where} ({result.bits_per_weight:.2f} bits per weight, {result.n_tensors} tensors, "
          f"{result.elapsed_s:.2f} s, {result.nthread} threads)")
    return 0


def _add_generation_flags(parser: argparse.ArgumentParser, prompt_default: str | None) -> None:
    if prompt_default is None:
        parser.add_argument("prompt")
    else:
        parser.add_argument("prompt", nargs="?", default=prompt_default)
    parser.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--n-ctx", dest="n_ctx", type=int, default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llamakit", description="Run GGUF models on llama.cpp.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--backend", default=None, help="auto, cpu, ... (default: auto)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backends", help="list backends and their availability").set_defaults(
        func=_cmd_backends)
    sub.add_parser("devices", help="list the devices of every built backend").set_defaults(
        func=_cmd_devices)
    build = sub.add_parser("build", help="build (or rebuild) backend variants")
    build.add_argument("backend", nargs="*")
    build.add_argument("--force", action="store_true", help="rebuild even if cached")
    build.set_defaults(func=_cmd_build)
    info = sub.add_parser("info", help="show a model's facts")
    info.add_argument("model")
    info.add_argument("--metadata", action="store_true", help="print every GGUF key")
    info.set_defaults(func=_cmd_info)
    generate = sub.add_parser("generate", help="generate text from a prompt")
    generate.add_argument("model")
    _add_generation_flags(generate, None)
    generate.set_defaults(func=_cmd_generate)
    demo = sub.add_parser("demo", help="chat with the embedded demo model",
                          description="Ask the embedded demo model a question (default: a "
                          "few sample questions), e.g. 'What is 48 + 37?'.")
    _add_generation_flags(demo, "")
    demo.set_defaults(func=_cmd_demo, temperature=0.0)
    quant = sub.add_parser("quantize", help="quantize a GGUF model (llama-quantize's options)",
                           description="Quantize SRC to TYPE into DST (backend: cpu unless "
                           "--backend); see --list for the types.")
    quant.add_argument("src", nargs="?")
    quant.add_argument("dst", nargs="?")
    quant.add_argument("type", nargs="?", help="Q4_K_M, Q8_0, ... (see --list)")
    quant.add_argument("--list", action="store_true", help="list types and recipes, then exit")
    quant.add_argument("--nthread", type=int, default=None)
    quant.add_argument("--allow-requantize", action="store_true")
    quant.add_argument("--leave-output-tensor", action="store_true",
                       help="keep output.weight unquantized")
    quant.add_argument("--output-tensor-type", default=None, metavar="GGML_TYPE")
    quant.add_argument("--token-embedding-type", default=None, metavar="GGML_TYPE")
    quant.add_argument("--tensor-type", action="append", default=[], metavar="PATTERN=TYPE",
                       help="quantize tensors matching the regex to TYPE (repeatable)")
    quant.add_argument("--pure", action="store_true", help="no k-quant mixes")
    quant.add_argument("--keep-split", action="store_true", help="one output per input shard")
    quant.add_argument("--imatrix", default=None, help="importance matrix file")
    quant.add_argument("--recipe", default=None, help="a registered quantization recipe")
    quant.add_argument("--dry-run", action="store_true", help="predict the size, write nothing")
    quant.add_argument("--no-progress", action="store_true")
    quant.set_defaults(func=_cmd_quantize)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(name)s: %(message)s")
    try:
        return int(args.func(args))
    except LlamakitError as exc:
        if args.debug:
            raise
        print(f"llamakit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
