"""``llamakit generate`` (a completion, streamed) and ``llamakit demo``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from ._common import cli_config, new_context, open_model, write
from ._options import add_config_flags

if TYPE_CHECKING:
    from .._results import GenerationResult

__all__ = ["register"]

#: The config sections whose keys are flags of the commands that generate.
GENERATION_SECTIONS = ("model", "context", "sampling")


def _summary(result: GenerationResult | None, backend: str) -> None:
    if result is None:
        return
    t = result.timings
    write(f"[{result.finish_reason}; {t.prompt_tokens} prompt tokens, {t.generated_tokens} "
          f"generated at {t.generated_tokens_per_s:.1f} tokens/s; backend {backend}]\n",
          err=True)


def _prompt(words: list[str], args: argparse.Namespace) -> str:
    if args.prompt is not None:
        if words or args.file is not None:
            raise ConfigError("give the prompt once: as PROMPT, with -p/--prompt or with "
                              "--file")
        return str(args.prompt)
    if args.file is not None:
        if words:
            raise ConfigError("give the prompt as an argument or with --file, not both")
        try:
            with open(args.file, encoding="utf-8") as handle:
                return handle.read()
        except OSError as exc:
            raise ConfigError(f"cannot read the prompt file {args.file}: "
                              f"{exc.strerror or exc}") from None
    if len(words) > 1:
        raise ConfigError(f"expected one PROMPT, got {len(words)} words (quote the prompt); "
                          "was the first one meant as MODEL? model files end in .gguf")
    if words:
        return words[0]
    if sys.stdin is not None and not sys.stdin.isatty():
        return sys.stdin.read()
    raise ConfigError("no prompt: give PROMPT, --file FILE, or pipe it to stdin")


def _cmd_generate(args: argparse.Namespace) -> int:
    config, words = cli_config(args, args.words)
    prompt = _prompt(words, args)
    with open_model(config) as model, new_context(model, config) as ctx:
        stream = ctx.stream(prompt, parse_special=args.parse_special)
        if args.echo:
            write(prompt)
        for piece in stream:
            write(piece)
        write("\n")
        if not getattr(args, "quiet", False):
            _summary(stream.result, model.backend)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .._demo import DEMO_QUESTIONS, demo_model_path, demo_model_record

    config, _ = cli_config(args, model=str(demo_model_path()))
    record = demo_model_record()
    write(f"llamakit demo: a {record['n_params'] / 1e6:.1f}M-parameter llama trained by "
          "tools/train_demo.py to add, subtract and multiply small numbers, convert units "
          "and spell words backwards; greedy replies through Context.chat.\n", err=True)
    questions = [" ".join(args.question)] if args.question else list(DEMO_QUESTIONS)
    sampling: dict[str, Any] = {}
    if "temperature" not in config.sampling.model_fields_set:
        sampling["temperature"] = 0.0  # the demo's answers are exact: greedy unless asked
    with open_model(config) as model, new_context(model, config) as ctx:
        tokens, seconds = 0, 0.0
        for question in questions:
            write(f"> {question}\n")
            stream = ctx.chat_stream([{"role": "user", "content": question}], **sampling)
            for piece in stream:
                write(piece)
            write("\n")
            if stream.result is not None:
                timings = stream.result.generation.timings
                tokens += timings.generated_tokens
                seconds += timings.generated_ms / 1000
        write(f"[{tokens} tokens generated at {tokens / max(seconds, 1e-9):.0f} tokens/s; "
              f"backend {model.backend}]\n", err=True)
    return 0


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "generate", parents=parents, help="generate text from a prompt (streamed)",
        description="Complete PROMPT with MODEL, printing the text as it is generated, then "
        "a summary line on stderr. MODEL may be left out when -m, the config's [model] path "
        "or LLAMAKIT_MODEL names one; PROMPT may come from --file or stdin.")
    p.add_argument("words", nargs="*", metavar="[MODEL] PROMPT",
                   help="the .gguf file, then the prompt")
    p.add_argument("-f", "--file", default=None, help="read the prompt from FILE")
    p.add_argument("--echo", action=argparse.BooleanOptionalAction, default=True,
                   help="print the prompt before the completion (default: yes)")
    p.add_argument("--parse-special", action=argparse.BooleanOptionalAction, default=True,
                   help="turn special-token text in the prompt into tokens (default: yes)")
    p.add_argument("-p", "--prompt", default=None, metavar="TEXT",
                   help="the prompt (as llama.cpp's tools take it), instead of PROMPT")
    add_config_flags(p, GENERATION_SECTIONS)
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("demo", parents=parents, help="chat with the embedded demo model",
                       description="Ask the embedded demo model a question (default: a few "
                       "sample questions), e.g. 'What is 48 + 37?'. Greedy unless "
                       "--temperature is given.")
    p.add_argument("question", nargs="*", help="the question (default: sample questions)")
    add_config_flags(p, GENERATION_SECTIONS, exclude=[("model", "path")])
    p.set_defaults(func=_cmd_demo)
