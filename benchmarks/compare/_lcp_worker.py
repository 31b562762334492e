"""llama-cpp-python's side of the benchmark; runs inside its own virtual environment.

The harness starts ``<lcp-venv>/bin/python _lcp_worker.py`` and talks to it in JSON lines:
one request on stdin, one reply on the original stdout (fd 1 is pointed at stderr first, so
anything llama.cpp prints cannot corrupt the protocol). Each request times one thing:

    {"cmd": "load", "model": PATH, "n_ctx": N, "n_batch": N, "n_ubatch": N,
     "n_threads": N, "flash_attn": true, "embedding": false, "pooling_type": -1}
    {"cmd": "pp", "tokens": [...]}                    Llama.eval of a prompt, from empty
    {"cmd": "complete", "prompt": TEXT, "max_tokens": N, "stream": bool,
     "sampling": {"temperature": .., "top_k": .., "top_p": .., "min_p": .., "seed": ..}}
    {"cmd": "overhead", ... as "complete", "runs": N}  the same with llama_decode stubbed
    {"cmd": "embed", "texts": [...]}                  Llama.embed(texts), not normalized
    {"cmd": "rss"}                                    peak RSS (VmHWM) of this process
    {"cmd": "quit"}

Python 3.8-compatible on purpose: it runs under whatever Python the venv has.
"""

import json
import os
import sys
import time


def _reply(out, payload):
    out.write(json.dumps(payload) + "\n")
    out.flush()


def _perf(llm):
    import llama_cpp

    data = llama_cpp.llama_perf_context(llm._ctx.ctx)
    return {"t_eval_ms": data.t_eval_ms, "n_eval": data.n_eval,
            "t_p_eval_ms": data.t_p_eval_ms, "n_p_eval": data.n_p_eval}


def _reset_perf(llm):
    import llama_cpp

    llama_cpp.llama_perf_context_reset(llm._ctx.ctx)


def _complete(llm, request):
    s = request["sampling"]
    kwargs = {"max_tokens": request["max_tokens"], "temperature": s["temperature"],
              "top_k": s.get("top_k", 40), "top_p": s.get("top_p", 1.0),
              "min_p": s.get("min_p", 0.0), "repeat_penalty": 1.0,
              "seed": s.get("seed")}
    # Start from an empty cache, as the llamakit side does: the prompt is
    # evaluated in every repetition.
    llm.reset()
    _reset_perf(llm)
    started = time.perf_counter()
    if request["stream"]:
        pieces = []
        first = None
        before = llm.n_tokens
        for chunk in llm.create_completion(request["prompt"], stream=True, **kwargs):
            if first is None:
                first = time.perf_counter() - started
            pieces.append(chunk["choices"][0]["text"])
            finish = chunk["choices"][0]["finish_reason"]
        wall = time.perf_counter() - started
        text = "".join(pieces)
        # The last token is sampled but not evaluated: n_tokens grows by the
        # prompt plus all generated tokens but one.
        n_prompt = len(llm.tokenize(request["prompt"].encode("utf-8"),
                                    special=True))
        n_gen = llm.n_tokens - before - n_prompt + 1
    else:
        result = llm.create_completion(request["prompt"], **kwargs)
        wall = time.perf_counter() - started
        first = None
        text = result["choices"][0]["text"]
        finish = result["choices"][0]["finish_reason"]
        n_prompt = result["usage"]["prompt_tokens"]
        n_gen = result["usage"]["completion_tokens"]
    return {"wall_s": wall, "first_s": first, "n_gen": n_gen, "n_prompt": n_prompt,
            "finish": finish, "text_len": len(text), "text": text[:200], "perf": _perf(llm)}


def main():
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    import llama_cpp

    llm = None
    for line in sys.stdin:
        request = json.loads(line)
        cmd = request["cmd"]
        if cmd == "quit":
            break
        try:
            if cmd == "load":
                started = time.perf_counter()
                llm = llama_cpp.Llama(
                    request["model"], n_ctx=request["n_ctx"], n_batch=request["n_batch"],
                    n_ubatch=request["n_ubatch"], n_threads=request["n_threads"],
                    n_threads_batch=request["n_threads"], flash_attn=request["flash_attn"],
                    embedding=request.get("embedding", False),
                    pooling_type=request.get("pooling_type", -1), verbose=False)
                _reply(out, {"load_s": time.perf_counter() - started,
                             "version": llama_cpp.__version__})
            elif cmd == "pp":
                tokens = request["tokens"]
                llm.reset()
                llm._ctx.kv_cache_clear()
                started = time.perf_counter()
                llm.eval(tokens)
                # As llama-bench: wait for the result (and close llama.cpp's perf interval,
                # which would otherwise run on into the next call's numbers).
                llama_cpp.llama_synchronize(llm._ctx.ctx)
                wall = time.perf_counter() - started
                _reply(out, {"wall_s": wall, "n_tokens": len(tokens)})
            elif cmd == "overhead":
                # Everything but the model: llama_decode is replaced by a no-op, so the
                # sampler keeps reading the logits of the last real decode.
                import llama_cpp.llama_cpp as raw

                real = raw.llama_decode
                raw.llama_decode = lambda ctx, batch: 0
                try:
                    walls, counts = [], []
                    for _ in range(request["runs"]):
                        reply = _complete(llm, request)
                        walls.append(reply["wall_s"])
                        counts.append(reply["n_gen"])
                finally:
                    raw.llama_decode = real
                _reply(out, {"walls_s": walls, "n_gen": counts})
            elif cmd == "complete":
                _reply(out, _complete(llm, request))
            elif cmd == "embed":
                started = time.perf_counter()
                vectors = llm.embed(request["texts"])
                wall = time.perf_counter() - started
                _reply(out, {"wall_s": wall, "n": len(vectors), "dim": len(vectors[0])})
            elif cmd == "rss":
                with open("/proc/self/status") as status:
                    hwm = next(line for line in status if line.startswith("VmHWM:"))
                _reply(out, {"maxrss_kb": int(hwm.split()[1])})
            else:
                _reply(out, {"error": "unknown command " + cmd})
        except Exception as exc:  # reported to the harness, which stops
            _reply(out, {"error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    main()
