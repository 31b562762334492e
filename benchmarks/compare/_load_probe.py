"""The Python sides of ``load_probe.c``: the same steps through llamakit or llama-cpp-python.

    python _load_probe.py llamakit MODEL N_CTX N_THREADS N_PROMPT N_GEN
    <lcp-venv>/bin/python _load_probe.py llama_cpp MODEL N_CTX N_THREADS N_PROMPT N_GEN

Imports the library, loads MODEL on the CPU (mmap), makes a context of N_CTX tokens
(n_batch = n_ubatch = 512), evaluates N_PROMPT tokens (BOS, then ids 1000, 1001, ...) and
N_GEN more greedy single tokens; prints one JSON line with the wall time of each step in
milliseconds and peak RSS in KiB: after the imports (the interpreter's own footprint), after
loading, and at the end. Python 3.8-compatible: it also runs in llama-cpp-python's venv.
"""

import json
import os
import sys
import time


def _rss():
    # VmHWM, the peak RSS of this process image: getrusage's ru_maxrss would include the
    # parent's peak, which Linux carries across fork and execve.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def _llamakit(model, n_ctx, n_threads, prompt, n_gen):
    t0 = time.perf_counter()
    import llamakit

    t1 = time.perf_counter()
    rss_imported = _rss()
    m = llamakit.load_model(model, backend="cpu")
    t2 = time.perf_counter()
    rss_loaded = _rss()
    ctx = m.new_context(n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=n_threads)
    t3 = time.perf_counter()
    # max_new_tokens=n_gen+1: the prompt's decode, then n_gen single-token decodes.
    result = ctx.generate(prompt, max_new_tokens=n_gen + 1, temperature=0)
    t4 = time.perf_counter()
    return {"import_ms": (t1 - t0) * 1e3, "load_ms": (t2 - t1) * 1e3,
            "context_ms": (t3 - t2) * 1e3, "run_ms": (t4 - t3) * 1e3,
            "n_gen": len(result.tokens), "maxrss_imported_kb": rss_imported,
            "maxrss_loaded_kb": rss_loaded, "maxrss_kb": _rss()}


def _llama_cpp(model, n_ctx, n_threads, prompt, n_gen):
    t0 = time.perf_counter()
    import llama_cpp

    t1 = time.perf_counter()
    rss_imported = _rss()
    # Llama() loads the model and makes the context in one call; flash attention on, as
    # llama.cpp's default (auto) resolves to on the CPU.
    llm = llama_cpp.Llama(model, n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=n_threads,
                          n_threads_batch=n_threads, flash_attn=True, verbose=False)
    t2 = time.perf_counter()
    rss_loaded = _rss()
    llm.eval(prompt)
    for _ in range(n_gen):
        llm.eval([llm.sample(temp=0.0)])
    t4 = time.perf_counter()
    return {"import_ms": (t1 - t0) * 1e3, "load_ms": (t2 - t1) * 1e3, "context_ms": None,
            "run_ms": (t4 - t2) * 1e3, "n_gen": n_gen, "maxrss_imported_kb": rss_imported,
            "maxrss_loaded_kb": rss_loaded, "maxrss_kb": _rss()}


def main():
    side, model = sys.argv[1], sys.argv[2]
    n_ctx, n_threads, n_prompt, n_gen = (int(v) for v in sys.argv[3:7])
    # The same prompt as load_probe.c; 128000 is llama-bpe's BOS (checked by the harness).
    prompt = [int(os.environ.get("LOAD_PROBE_BOS", "128000"))] + \
        [1000 + i for i in range(1, n_prompt)]
    run = _llamakit if side == "llamakit" else _llama_cpp
    sys.stdout.write(json.dumps(run(model, n_ctx, n_threads, prompt, n_gen)) + "\n")


if __name__ == "__main__":
    main()
