"""One sample from a real decode's logits, per chain kind: what the shim's shortcuts cost
over a large vocabulary (the greedy argmax, the top-k shortcut of the default chain) and
what llama.cpp's general path costs on the same logits.

    nice python benchmarks/micro/sample_vocab.py [--model PATH] [--samples 300] [--rounds 3]

Loads the model on the CPU backend, decodes two tokens, then times ``SamplerHandle.sample``
on the last output (the logits do not change between samples; each sample runs the whole
chain, the shortcut included) for: greedy after a logit_bias ban of the end-of-generation
tokens (what ``generate(temperature=0)`` builds), llama.cpp's default chain after the same
ban (top_k 40, top_p 0.95, min_p 0.05, temperature 0.8, dist), and the default chain with
the shortcuts turned off (``fast_paths = False``: llama.cpp's own candidate array and
stages). Prints the median µs of ``--samples`` per round. The default model is the small
gemma of the model cache (262,144 tokens).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import llamakit
from llamakit import SamplerChain
from llamakit._build.cache import cache_dir


def _default_model() -> Path:
    found = sorted((cache_dir() / "models").glob("*/gemma-3-270m-q4_k_m.gguf"))
    if not found:
        raise SystemExit("no gemma-3-270m in the model cache: pass --model")
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with llamakit.load_model(args.model or _default_model(), backend="cpu") as model, \
            model.new_context(n_ctx=256, n_threads=2) as ctx:
        ctx._handle.decode(model.tokenize("Once upon a time"))
        ban = [(t, float("-inf")) for t in model.special_tokens if model.is_eog(t)]

        def default() -> SamplerChain:
            return (SamplerChain(model).add("logit_bias", logit_bias=ban).add_top_k(40)
                    .add_top_p(0.95).add_min_p(0.05).add_temp(0.8).add_dist(seed=1))

        chains = {"greedy (ban)": SamplerChain(model).add("logit_bias", logit_bias=ban)
                  .add_greedy(), "default chain (ban)": default(),
                  "default chain, general path": default()}
        chains["default chain, general path"]._handle.fast_paths = False
        print(f"{model.n_vocab:,} tokens, {len(ban)} banned")
        for round_ in range(args.rounds):
            line = []
            for name, chain in chains.items():
                handle = chain._handle
                for _ in range(20):
                    handle.sample(ctx._handle)
                times = []
                for _ in range(args.samples):
                    started = time.perf_counter()
                    handle.sample(ctx._handle)
                    times.append(time.perf_counter() - started)
                line.append(f"{name} {statistics.median(times) * 1e6:.1f} µs")
            print(f"round {round_ + 1}: " + "; ".join(line), flush=True)
        for chain in chains.values():
            chain.close()


if __name__ == "__main__":
    main()
