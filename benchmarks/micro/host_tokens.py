"""Host work per generated token: what ``Context.generate`` costs between two decodes.

    python benchmarks/micro/host_tokens.py [--rounds 30] [--tokens 200] [--json OUT]

Tiny synthetic model (``write_llama_model`` defaults: llama-spm vocabulary, 64-wide, 2
layers), CPU, one thread, greedy with a ``logit_bias`` stage that bans the
end-of-generation tokens (so every call runs its ``max_new_tokens``), as the GPU benchmarks
do. Three measures, rounds interleaved:

* ``stubbed``: the context's single-token ``llama_decode`` replaced by a function that
  returns 0 at once (the handle's ``lib`` wrapped; the sampler reads the prompt's logits
  again and again), so a token is the host work plus the sampler's own C
  work (an argmax over 32,000 logits, about 7 µs here): CPU time of the calling thread
  (``time.thread_time``), ``generate(max_new_tokens=N)`` minus ``generate(max_new_tokens=1)``
  over ``N - 1``;
* ``real``: the same with the real decode (one thread, so it runs on the calling thread
  and thread time holds it too), and the tokens/s of wall time;
* ``stream_stubbed``: ``stubbed`` for ``Context.stream`` read to its end;
* ``real_stream``: ``real`` for ``Context.stream`` (since ``generate`` decodes its tokens in
  native runs, ``lk_generate_run``, ``stream`` is the per-token Python loop; ``generate``'s
  decodes are then made by C, which the stub does not reach: its ``stubbed`` is real);
* ``native``: one ``lk_sampler_sample_piece`` call of the same chain (logit_bias ban,
  greedy) made straight through cffi in a loop: the sampler's C work and the cffi call,
  which ``stubbed`` holds too; ``stubbed - native`` is llamakit's Python per token;
* counts (deterministic, printed once): handle pins (``Handle._begin_call``) and Python
  function calls (``sys.setprofile`` "call" events) per generated token.

Runs against whichever ``llamakit`` is importable (``PYTHONPATH`` picks a checkout), so the
same script measures before and after a change.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import llamakit
from llamakit._native.handle import Handle
from llamakit.testing import write_llama_model

PROMPT = "Once upon a time"


class _StubLib:
    """``lib`` with the decode entry points answering 0 at once (everything else real)."""

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        # A prompt (several tokens) is decoded for real: sampling needs its logits, which
        # the stubbed single-token decodes leave in place.
        self.llama_decode = lambda ctx, batch: \
            lib.llama_decode(ctx, batch) if batch.n_tokens > 1 else 0
        self.lk_decode_interruptible = lambda ctx, batch, flag: \
            lib.lk_decode_interruptible(ctx, batch, flag) if batch.n_tokens > 1 else 0

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._lib, name)
        setattr(self, name, value)  # later lookups are plain attribute reads
        return value


def _generate(ctx: Any, n: int, bias: dict[int, float], stream: bool = False) -> float:
    start = time.thread_time()
    if stream:
        for _ in ctx.stream(PROMPT, max_new_tokens=n, temperature=0, logit_bias=bias):
            pass
    else:
        ctx.generate(PROMPT, max_new_tokens=n, temperature=0, logit_bias=bias)
    return time.thread_time() - start


def _per_token(ctx: Any, n: int, bias: dict[int, float], stream: bool = False) -> float:
    return (_generate(ctx, n, bias, stream) - _generate(ctx, 1, bias, stream)) / (n - 1)


def _counts(ctx: Any, n: int, bias: dict[int, float]) -> tuple[float, float]:
    pins = [0]
    original = Handle._begin_call

    def counting(self: Handle) -> Any:
        pins[0] += 1
        return original(self)

    def run(tokens: int) -> tuple[int, int]:
        calls = [0]

        def profile(frame: Any, event: str, arg: Any) -> None:
            if event == "call":
                calls[0] += 1

        pins[0] = 0
        sys.setprofile(profile)
        try:
            ctx.generate(PROMPT, max_new_tokens=tokens, temperature=0, logit_bias=bias)
        finally:
            sys.setprofile(None)
        return pins[0], calls[0]

    Handle._begin_call = counting  # type: ignore[method-assign]
    try:
        pins_1, calls_1 = run(1)
        pins_n, calls_n = run(n)
    finally:
        Handle._begin_call = original  # type: ignore[method-assign]
    return (pins_n - pins_1) / (n - 1), (calls_n - calls_1) / (n - 1)


def _native_sample(ctx: Any, bias: dict[int, float], n: int = 500) -> float:
    """Thread time of one raw ``lk_sampler_sample_piece`` call (greedy after the ban)."""
    chain = llamakit.SamplerChain(ctx.model).add_logit_bias(bias).add_greedy()
    handle = chain._handle
    lib, ffi = handle.lib, handle.ffi
    eog, piece, n_piece = ffi.new("bool[1]"), ffi.new("char[]", 256), ffi.new("int32_t[1]")
    top_k = handle.first_top_k
    with ctx._handle.pinned() as ctx_ptr, handle.pinned() as chain_ptr:
        start = time.thread_time()
        for _ in range(n):
            lib.lk_sampler_sample_piece(chain_ptr, ctx_ptr, -1, top_k, False, eog, piece, 256,
                                        n_piece)
        spent = time.thread_time() - start
    chain.close()
    return spent / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_llama_model(Path(tmp) / "tiny.gguf")
        model = llamakit.load_model(path, backend="cpu")
        ctx = model.new_context(n_ctx=2048, n_threads=1, n_threads_batch=1)
        stub = model.new_context(n_ctx=2048, n_threads=1, n_threads_batch=1)
        handle = stub._handle
        handle.lib = _StubLib(handle.lib)
        vocab = model.n_vocab
        bias = {t: float("-inf") for t in range(vocab) if model.is_eog(t)}
        for c in (ctx, stub):  # warm up: caches, first-call imports
            _per_token(c, 20, bias)
        pins, calls = _counts(stub, args.tokens, bias)
        stubbed: list[float] = []
        real: list[float] = []
        rates: list[float] = []
        native: list[float] = []
        streamed: list[float] = []
        real_streamed: list[float] = []
        for _ in range(args.rounds):
            real_streamed.append(_per_token(ctx, args.tokens, bias, stream=True) * 1e6)
            streamed.append(_per_token(stub, args.tokens, bias, stream=True) * 1e6)
            native.append(_native_sample(stub, bias) * 1e6)
            stubbed.append(_per_token(stub, args.tokens, bias) * 1e6)
            real.append(_per_token(ctx, args.tokens, bias) * 1e6)
            wall = time.perf_counter()
            ctx.generate(PROMPT, max_new_tokens=args.tokens, temperature=0, logit_bias=bias)
            rates.append(args.tokens / (time.perf_counter() - wall))
    report = {
        "llamakit": str(Path(llamakit.__file__).parent),
        "pins_per_token": pins, "python_calls_per_token": calls,
        "stubbed_us": {"min": min(stubbed), "median": statistics.median(stubbed)},
        "stream_stubbed_us": {"min": min(streamed), "median": statistics.median(streamed)},
        "native_us": {"min": min(native), "median": statistics.median(native)},
        "real_us": {"min": min(real), "median": statistics.median(real)},
        "real_stream_us": {"min": min(real_streamed), "median": statistics.median(real_streamed)},
        "tokens_per_s": {"max": max(rates), "median": statistics.median(rates)},
    }
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
