"""The harness's markdown: medians, spreads and ratios from ``results.json``.

    python benchmarks/_report.py benchmarks/results/results.json    # re-render the tables
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

__all__ = ["markdown"]

LK, LCP = "llamakit", "llama-cpp-python"


def _spread(samples: list[dict[str, Any]]) -> str:
    values = [s["tps"] for s in samples]
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def _median(samples: list[dict[str, Any]], key: str = "tps") -> float:
    return float(statistics.median(s[key] for s in samples))


def _best(samples: list[dict[str, Any]]) -> float:
    return float(max(s["tps"] for s in samples))


def _ratios(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    """Ratio of the medians (bold) and of the best runs."""
    return f"**{_median(a) / _median(b):.3f}** / {_best(a) / _best(b):.3f}"


def _model_tables(m: dict[str, Any], reps: int) -> list[str]:
    s = m["samples"]
    lines = [f"### {m['ftype']} ({m['model']}, {m['size_mb']} MB)", "",
             f"Tokens per second, median of {reps} interleaved runs (min–max). Ratio = "
             "llamakit / reference (above 1: llamakit faster), of the medians (bold) and of "
             "the best runs (the least disturbed by other work on the machine).", "",
             "| test | llama-bench | llamakit engine | ratio | llama-cpp-python `Llama.eval` | "
             "ratio |", "| --- | --- | --- | --- | --- | --- |"]
    lb_pp, lk_pp, lcp_pp = (_median(s[k]) for k in (
        "llama-bench pp", "llamakit engine pp", "llama-cpp-python eval pp"))
    del lb_pp, lk_pp, lcp_pp
    lines.append(f"| pp{s['llamakit engine pp'][0]['n']} | {_spread(s['llama-bench pp'])} | "
                 f"{_spread(s['llamakit engine pp'])} | "
                 f"{_ratios(s['llamakit engine pp'], s['llama-bench pp'])} | "
                 f"{_spread(s['llama-cpp-python eval pp'])} | "
                 f"{_ratios(s['llamakit engine pp'], s['llama-cpp-python eval pp'])} |")
    lb_tg, lk_tg = _median(s["llama-bench tg"]), _median(s["llamakit engine tg"])
    n_gen = s["llamakit engine tg"][0]["n"]
    lines.append(f"| tg{n_gen} | {_spread(s['llama-bench tg'])} | "
                 f"{_spread(s['llamakit engine tg'])} | "
                 f"{_ratios(s['llamakit engine tg'], s['llama-bench tg'])} | – | – |")
    if "llamakit engine tg (decode only)" in s:
        lines.append(f"| tg{n_gen}, decode only | {_spread(s['llama-bench tg'])} | "
                     f"{_spread(s['llamakit engine tg (decode only)'])} | "
                     f"{_ratios(s['llamakit engine tg (decode only)'], s['llama-bench tg'])} "
                     "| – | – |")
    lines += ["", f"End to end: a text prompt of {m['n_prompt_e2e']} tokens ({m['prompt']!r}), "
              f"{n_gen} generated tokens, tokens/s = {n_gen} / wall time of the whole call "
              "(tokenize, prompt, sampling, detokenize). \"Outside decode\" = (wall − "
              "llama.cpp's own decode time from `llama_perf_context`) / tokens: the "
              "per-token cost of everything that is not the model.", "",
              f"| call | {LK} | {LCP} | ratio | {LK} outside decode | {LCP} outside decode |",
              "| --- | --- | --- | --- | --- | --- |"]
    for call in ("generate greedy", "stream greedy", "generate top_p", "stream top_p"):
        a, b = s.get(f"{LK} {call}"), s.get(f"{LCP} {call}")
        if a is None or b is None:
            continue
        lines.append(f"| {call.replace('_', '-')} | {_spread(a)} | {_spread(b)} | "
                     f"{_ratios(a, b)} | "
                     f"{_median(a, 'outside_us'):.0f} µs | {_median(b, 'outside_us'):.0f} µs |")
    best_gap = 1 / _best(s["llamakit engine tg"]) - 1 / _best(s["llama-bench tg"])
    engine_out = _median(s["llamakit engine tg"], "outside_us")
    gen_out = _median(s[f"{LK} generate greedy"], "outside_us")
    sample_real = _median(s["llamakit engine tg"], "sample_us")
    sampler = m["sampler_us"]
    lines += ["", "Per-token cost of llamakit's Python side (microseconds per token; "
              "\"stubbed\": measured with llama.cpp's decode replaced by a no-op, see the "
              "next table):", "",
              "| what | µs/token |", "| --- | --- |"]
    overhead = m.get("overhead")
    if overhead:
        ov = {k: v["best_us"] for k, v in overhead[LK].items()}
        lines += [
            f"| engine loop, Python only: the loop and `ContextHandle.decode`'s wrapper "
            f"(stubbed) | {ov['engine loop, no sampling']:.1f} |",
            f"| engine loop with greedy sampling (stubbed) | {ov['engine loop']:.0f} |",
            f"| end-to-end `generate` greedy (stubbed) − engine loop (stubbed): tokenize, "
            f"end-of-generation check, piece, text assembly, result | "
            f"{ov['generate greedy'] - ov['engine loop']:.0f} |",
            f"| same for `stream` greedy | {ov['stream greedy'] - ov['engine loop']:.0f} |"]
    lines += [
        f"| llama.cpp's greedy sampler over {m.get('n_vocab', 'all')} logits, caches warm "
        f"(one `SamplerHandle.sample` call in a loop) | {sampler['greedy']:.0f} |",
        f"| the same call right after a real decode (caches cold), in the engine loop | "
        f"{sample_real:.0f} |",
        f"| top-p chain (top-k 40, top-p 0.95, min-p 0.05, temperature 0.8, dist), caches "
        f"warm | {sampler['top_p']:.0f} |",
        f"| engine loop: wall time outside llama.cpp's own decode timer | {engine_out:.0f} |",
        f"| end-to-end `generate` greedy: the same | {gen_out:.0f} |",
        f"| end-to-end − engine loop, real runs | {gen_out - engine_out:.0f} |",
        f"| engine loop − llama-bench tg, from the medians (1/tg − 1/tg) | "
        f"{(1 / lk_tg - 1 / lb_tg) * 1e6:.0f} |",
        f"| engine loop − llama-bench tg, from the best runs | {best_gap * 1e6:.0f} |",
        f"| one token of llama.cpp itself, for scale (1 / llama-bench tg) | "
        f"{1e6 / lb_tg:.0f} |"]
    overhead = m.get("overhead")
    if overhead:
        lines += ["", "Per-token cost of everything but the model, measured with `llama_decode` "
                  "stubbed out on both sides (the samplers keep reading the last real logits; "
                  "llamakit's own decode wrapper still runs): microseconds per token, best "
                  "of 20 runs of "
                  f"{n_gen} tokens (median in brackets). Includes llama.cpp's C sampler over "
                  "all logits, which any generation loop pays.", "",
                  f"| call | {LK} | {LCP} |", "| --- | --- | --- |"]
        for name, v in overhead[LK].items():
            other = overhead[LCP].get(name)
            theirs = (f"{other['best_us']:.0f} ({other['median_us']:.0f})" if other else "–")
            lines.append(f"| {name.replace('_', '-')} | {v['best_us']:.1f} "
                         f"({v['median_us']:.1f}) | {theirs} |")
    loads = [row[0] for row in m["load_average"]] + [row[3] for row in m["load_average"]]
    pressure = [v for v in m.get("cpu_pressure", []) if v is not None]
    contention = (f"; CPU pressure (PSI some avg10, % of time another task waited) after "
                  f"each round {min(pressure):.0f}–{max(pressure):.0f}" if pressure else "")
    lines += ["", f"Load average (1 min) during these runs: {min(loads):.2f}–{max(loads):.2f}"
              f"{contention}.", ""]
    return lines


def _load_tables(p: dict[str, Any]) -> list[str]:
    lines = ["### Model load and peak memory", "",
             "A fresh process per run: load the model (mmap), make a context (n_ctx 640, "
             "n_batch 512), evaluate 32 prompt tokens and 16 greedy tokens. Medians. "
             "`import` is the library's import; `load` is `load_model` (llamakit), "
             "`llama_model_load_from_file` (C) or `Llama()` (llama-cpp-python: model **and** "
             "context). RSS is the peak resident set (VmHWM).", "",
             "| model | page cache | side | import | load | context | whole process | "
             "peak RSS | RSS after import |", "| --- | --- | --- | --- | --- | --- | --- | --- "
             "| --- |"]
    for ftype, entry in p["load"].items():
        for cache in ("cold", "warm"):
            if cache not in entry:
                continue
            for side, v in entry[cache]["summary"].items():
                imp = f"{v['import_ms']:.0f} ms" if "import_ms" in v else "–"
                ctx = f"{v['context_ms']:.0f} ms" if "context_ms" in v else "(in load)"
                after = (f"{v['maxrss_imported_kb'] / 1024:.0f} MiB"
                         if "maxrss_imported_kb" in v else "–")
                lines.append(f"| {ftype} | {cache} | {side} | {imp} | {v['load_ms']:.0f} ms | "
                             f"{ctx} | {v['process_ms']:.0f} ms | "
                             f"{v['maxrss_kb'] / 1024:.0f} MiB | {after} |")
    if not p.get("drop_caches"):
        lines += ["", "(Cold runs skipped: dropping the page cache needs root.)"]
    e = p.get("embeddings")
    if e:
        lines += ["", "### Embeddings", "",
                  f"{e['n_texts']} texts ({e['n_tokens']} tokens, 12 to 60 words each) in one "
                  f"call, packed into shared decode calls of up to n_batch = 512 tokens "
                  f"(llamakit: `new_context(embeddings=True, pooling='mean', n_seq_max=...)`; "
                  f"llama-cpp-python: `Llama(embedding=True, pooling_type=MEAN)`), not "
                  f"normalized, on {e['model']}; median of "
                  f"{len(e[LK]['samples_s'])} interleaved runs.", "",
                  "| side | texts/s | tokens/s |", "| --- | --- | --- |",
                  f"| {LK} | {e[LK]['texts_per_s']:.1f} | {e[LK]['tokens_per_s']:.0f} |",
                  f"| {LCP} | {e[LCP]['texts_per_s']:.1f} | {e[LCP]['tokens_per_s']:.0f} |",
                  f"| ratio llamakit / llama-cpp-python | **{e['ratio']:.3f}** | |"]
    return lines


def markdown(results: dict[str, Any]) -> str:
    mach, settings = results["machine"], results["settings"]
    lines = [f"## Results: {mach['cpu']}, {mach['cpus']} CPUs, {mach['memory_gib']} GiB",
             "",
             f"- run {results['started']}, {results['wall_s']:.0f} s, command "
             f"`{results['command']}`",
             f"- threads {settings['threads']}, n_batch 2048, n_ubatch 512; "
             f"{settings['reps']} measured rounds after one warm-up round",
             f"- load average (1/5/15 min) at start {results['load_average_start']}, at end "
             f"{results['load_average_end']}",
             f"- llama.cpp tree `{results['llama_cpp']['tree']}` "
             f"({results['llama_cpp']['identity']})",
             f"- kernel {mach['kernel']}, Python {mach['python']}, {mach['compiler']}", ""]
    for m in results["models"].values():
        lines += _model_tables(m, settings["reps"])
    # "part4": the key of results written before the harness named its parts (2026-11-25).
    load = results.get("load", results.get("part4"))
    if load is not None:
        lines += _load_tables(load)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
