"""Per-token cost of a lazy grammar that is still waiting for its trigger, against the
length of the output so far.

    python benchmarks/micro/lazy_trigger.py [--tokens 100,1000,5000,20000] [--window 50]

A tiny synthetic model (llama-bpe vocabulary, 128,256 tokens; no decode is run) samples
``--tokens`` tokens with ``SamplerHandle.sample_logits`` from logits that make a fixed
English text the greedy choice, through a chain of a lazy grammar and greedy. The trigger
never appears in that text. Printed: the mean time of one sample (grammar accept included)
over the ``--window`` tokens around each output length, and (in parentheses) the bytes the
shim gave std::regex per token (``lk_sampler_grammar_scanned``; 0 where the module has no
such counter, i.e. before llamakit owned the wait), for

* ``pattern``: a user trigger pattern (``grammar_trigger_patterns=["<tool>"]``);
* ``full``: a full-match pattern of the chat layer's shape (``^[\\s\\S]*?(<tool>)[\\s\\S]*$``);
* ``chat``: the lazy tool-call grammar and triggers of the Hermes 2 Pro template of the
  pinned tree, as ``Context.chat(..., tools=...)`` builds them;
* ``none``: greedy alone with a non-lazy grammar stage, for the constant part.

``--crash N`` instead accepts N tokens of the longest single-token pieces into a ``full``
lazy grammar in a subprocess and reports how it ended (llama.cpp's std::regex recursion
can overflow the C stack on a long buffer).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import llamakit
from llamakit._chat.tools import plan_native
from llamakit._grammar import Grammar
from llamakit.testing import write_llama_model

TEXT = ("The quick brown fox jumps over the lazy dog while the farmer counts his sheep and "
        "the river runs quietly past the old mill, carrying leaves and small branches. ")
GRAMMAR = 'root ::= "<tool>" [a-z]+ "</tool>"'
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city.",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string"}}}}}]


def _model(folder: Path, template: str | None = None) -> Any:
    path = write_llama_model(folder / "m.gguf", vocab="llama-bpe", n_embd=32, n_layer=1,
                             n_head=4, n_head_kv=2, chat_template=template)
    return llamakit.load_model(path, backend="cpu")


def _chat_grammar(model: Any) -> Grammar:
    from llamakit._build.source import source_tree

    source = (source_tree().path / "models/templates/"
              "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja").read_text()
    plan = plan_native(model, source, [{"role": "user", "content": "Weather in Paris?"}],
                       tools=TOOLS, tool_choice="auto", parallel_tool_calls=None,
                       reasoning_format=None, reasoning_budget=None,
                       continue_final_message=False, chat_template_kwargs=None,
                       json_schema=None)
    assert plan.grammar is not None and plan.grammar.lazy
    return plan.grammar


def _grammar(model: Any, case: str) -> Grammar:
    if case == "pattern":
        return Grammar(GRAMMAR).lazy_on(patterns=["<tool>"])
    if case == "full":
        return Grammar(GRAMMAR).lazy_on(patterns=[r"^[\s\S]*?(<tool>)[\s\S]*$"])
    if case == "chat":
        return _chat_grammar(model)
    return Grammar('root ::= [^<]*')


def measure(model: Any, case: str, lengths: list[int], window: int) -> dict[int, float]:
    chain = llamakit.SamplerChain(model).add_grammar(_grammar(model, case)).add_greedy()
    handle = chain._handle
    tokens = model.tokenize(TEXT * 2, add_special=False)
    logits = np.full(model.n_vocab, -10.0, dtype=np.float32)
    times = np.zeros(max(lengths) + window, dtype=np.float64)
    scanned = np.zeros(times.size, dtype=np.int64)
    lib = handle.lib
    stage = lib.llama_sampler_chain_get(handle.ptr, 0)
    counter = getattr(lib, "lk_sampler_grammar_scanned", lambda _: 0)
    for i in range(times.size):
        token = tokens[i % len(tokens)]
        logits[token] = 10.0
        start = time.perf_counter()
        handle.sample_logits(logits)
        times[i] = time.perf_counter() - start
        scanned[i] = counter(stage)
        logits[token] = -10.0
    per_token = np.diff(scanned, prepend=0)
    return {n: (float(times[max(0, n - window // 2):n + window // 2].mean()),
                float(per_token[max(0, n - window // 2):n + window // 2].mean()))
            for n in lengths}


def crash(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = _model(Path(tmp))
        special = set(model.special_tokens)
        pieces = {t: model.token_to_bytes(t, special=True) for t in range(model.n_vocab)
                  if t not in special}
        longest = max(pieces, key=lambda t: len(pieces[t]) if b"<" not in pieces[t] else 0)
        chain = llamakit.SamplerChain(model).add_grammar(_grammar(model, "full"))
        piece = pieces[longest]
        print(f"piece of {len(piece)} bytes: {piece!r}", flush=True)
        start = time.perf_counter()
        for i in range(n):
            chain.accept(longest)
            if (i + 1) % 50 == 0:
                print(f"{i + 1} tokens, {(i + 1) * len(piece)} bytes, "
                      f"{time.perf_counter() - start:.1f} s", flush=True)
        print("no crash", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", default="100,1000,5000,20000")
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--cases", default="none,pattern,full,chat")
    parser.add_argument("--crash", type=int, default=0)
    parser.add_argument("--crash-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.crash_child:
        crash(args.crash_child)
        return
    if args.crash:
        done = subprocess.run([sys.executable, __file__, "--crash-child", str(args.crash)],
                              check=False)
        print(f"exit status {done.returncode}")
        return
    lengths = [int(x) for x in args.tokens.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        from llamakit._build.source import source_tree

        template = (source_tree().path / "models/templates/"
                    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja").read_text()
        with _model(Path(tmp), template) as model:
            print("| case | " + " | ".join(f"{n} tokens" for n in lengths) + " |")
            print("| --- |" + " --- |" * len(lengths))
            for case in args.cases.split(","):
                result = measure(model, case, lengths, args.window)
                print(f"| {case} | " + " | ".join(
                    f"{result[n][0] * 1e6:.0f} µs ({result[n][1]:.0f} B)" for n in lengths)
                    + " |", flush=True)


if __name__ == "__main__":
    main()
