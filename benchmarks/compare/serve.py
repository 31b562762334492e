"""``llamakit serve`` against llama.cpp's ``llama-server``: aggregate generated tokens/s and
time to first token (p50/p99) at 1, 4 and 16 concurrent streaming clients.

    python benchmarks/compare/serve.py [--shape 1b] [--ftype Q4_0] [--concurrency 1,4,16]
        [--tokens 64] [--requests 2] [--threads N] [--rounds 1] [--json FILE]
        [--model PATH] [--backend cuda --n-gpu-layers 99] [--markdown FILE]

On a GPU machine: ``--model`` a GGUF written there, ``--backend cuda --n-gpu-layers 99``
and ``--llama-server`` the CUDA build's binary (benchmarks/gpu/cuda.sh's ``serve`` phase).

Both servers get the same model (a synthetic ``--shape`` model in ``--ftype``, see
benchlib/models.py), ``--parallel`` = the largest concurrency, the same total context
(``-c``, 512 tokens a slot), the same threads, greedy sampling, and prompt caching off.
Each client streams ``--requests`` chat-less completions in a row, each a different short
prompt that generates exactly ``--tokens`` tokens (end-of-generation banned through
``logit_bias``). The two servers run one after the other for each concurrency, and the
order alternates by round (interleaved), so a change in machine load hits both. Clients
speak plain HTTP/1.1 SSE (the same client code for both servers); TTFT is from sending the
request to the first chunk carrying text. llama-server is built from the pinned tree with
``llamakit.testing.build_tool("llama-server")`` (minutes the first time), or given with
``--llama-server PATH``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from benchlib.models import model_path  # noqa: E402

import llamakit  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def no_eog(path: Path) -> dict[str, float]:
    with llamakit.load_model(path, vocab_only=True) as model:
        return {str(t): -100.0 for t in range(model.n_vocab) if model.is_eog(t)}


def start(kind: str, model: Path, parallel: int, threads: int, binary: str | None,
          backend: str = "cpu", gpu_layers: int = 0) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    common = ["-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-np",
              str(parallel), "-c", str(512 * parallel), "-ngl", str(gpu_layers)]
    if kind == "llamakit":
        args = [sys.executable, "-m", "llamakit", "serve", *common, "--n-threads", str(threads),
                "--n-threads-batch", str(threads), "--no-cache-prompt", "--backend", backend]
    else:
        if binary is None:
            from llamakit.testing import build_tool
            binary = str(build_tool("llama-server"))
        args = [binary, *common, "-t", str(threads), "-tb",
                str(threads), "--no-cache-prompt", "--no-webui"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited: {process.stderr.read().decode()[-2000:]}"
                               if process.stderr else f"{kind} exited")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return process, port
        except OSError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"{kind} did not become healthy")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


#: Extra fields of every request body (--backend-sampling adds llama-server's
#: "backend_sampling": true, which both servers take).
EXTRA_FIELDS: dict[str, Any] = {}


def one_request(port: int, prompt: str, tokens: int, bias: dict[str, float]
                ) -> tuple[float, int, float]:
    """(TTFT seconds, text chunks, total seconds) of one streamed completion."""
    body = json.dumps({"prompt": prompt, "max_tokens": tokens,
                       "temperature": 0, "stream": True, "logit_bias": bias,
                       "cache_prompt": False, **EXTRA_FIELDS})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.read()[:500]!r}")
    first, chunks = 0.0, 0
    for line in response:
        if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
            continue
        event = json.loads(line[6:])
        if event.get("choices") and event["choices"][0].get("text"):
            chunks += 1
            if not first:
                first = time.perf_counter() - started
    conn.close()
    return first, chunks, time.perf_counter() - started


def measure(port: int, clients: int, per_client: int, tokens: int, bias: dict[str, float],
            usage: Any) -> dict[str, float]:
    ttfts: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            for r in range(per_client):
                prompt = f"Request {index}-{r}: the numbers {index * 7 + r} and {r * 3 + 1}"
                ttft, _, _ = one_request(port, prompt, tokens, bias)
                with lock:
                    ttfts.append(ttft)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    generated = clients * per_client * tokens  # exactly: EOG is banned, max_tokens reached
    ttfts.sort()
    return {"tokens_per_s": generated / elapsed, "ttft_p50": statistics.median(ttfts),
            "ttft_p99": ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))],
            "seconds": elapsed, "load_before": usage}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="1b")
    parser.add_argument("--ftype", default="Q4_0")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", default=None)
    parser.add_argument("--llama-server", default=None, metavar="PATH",
                        help="a llama-server binary (default: build_tool('llama-server'))")
    parser.add_argument("--only", choices=["llamakit", "llama-server"], default=None,
                        help="run one side only")
    parser.add_argument("--model", default=None, metavar="PATH",
                        help="a GGUF file instead of the --shape/--ftype synthetic model")
    parser.add_argument("--backend", default="cpu", help="llamakit's backend (default cpu)")
    parser.add_argument("--n-gpu-layers", type=int, default=0,
                        help="-ngl for both servers (default 0)")
    parser.add_argument("--markdown", default=None, metavar="FILE",
                        help="also write the summary table (medians over rounds) here")
    parser.add_argument("--backend-sampling", action="store_true",
                        help="every request asks both servers to sample inside llama.cpp's "
                        "graph (\"backend_sampling\": true)")
    args = parser.parse_args()
    if args.backend_sampling:
        EXTRA_FIELDS["backend_sampling"] = True
    levels = [int(x) for x in args.concurrency.split(",")]
    model = Path(args.model) if args.model else model_path(args.shape, args.ftype)
    bias = no_eog(model)
    parallel = max(levels)
    results: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        for level in levels:
            order = ["llamakit", "llama-server"] if (rnd + level) % 2 == 0 else \
                ["llama-server", "llamakit"]
            for kind in [k for k in order if args.only in (None, k)]:
                process, port = start(kind, model, parallel, args.threads, args.llama_server,
                                      args.backend, args.n_gpu_layers)
                try:
                    one_request(port, "warm up", 8, bias)
                    row = measure(port, level, args.requests, args.tokens, bias,
                                  os.getloadavg()[0])
                finally:
                    stop(process)
                row.update(server=kind, clients=level, round=rnd)
                results.append(row)
                print(f"{kind:13s} clients={level:3d} {row['tokens_per_s']:8.1f} tok/s  "
                      f"TTFT p50 {row['ttft_p50'] * 1000:7.0f} ms  p99 "
                      f"{row['ttft_p99'] * 1000:7.0f} ms  (load {row['load_before']:.1f})",
                      flush=True)
    meta = {"model": model.name, "parallel": parallel, "ctx": 512 * parallel,
            "threads": args.threads, "tokens": args.tokens, "requests": args.requests,
            "machine": platform.machine(), "cpus": os.cpu_count(), "backend": args.backend,
            "n_gpu_layers": args.n_gpu_layers, "rounds": args.rounds,
            "backend_sampling": args.backend_sampling}
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    table = summary(results, levels)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")


def summary(results: list[dict[str, Any]], levels: list[int]) -> str:
    """Medians over rounds per server and concurrency, with llamakit / llama-server."""
    def median(server: str, level: int, key: str) -> float:
        values = [r[key] for r in results if r["server"] == server and r["clients"] == level]
        return statistics.median(values) if values else float("nan")

    lines = ["| clients | llamakit tok/s | llama-server tok/s | ratio | llamakit TTFT p50 / p99 ms "
             "| llama-server TTFT p50 / p99 ms | TTFT p50 ratio |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for level in levels:
        ours, theirs = median("llamakit", level, "tokens_per_s"), \
            median("llama-server", level, "tokens_per_s")
        t50, t99 = median("llamakit", level, "ttft_p50"), median("llamakit", level, "ttft_p99")
        s50, s99 = median("llama-server", level, "ttft_p50"), \
            median("llama-server", level, "ttft_p99")
        lines.append(f"| {level} | {ours:,.1f} | {theirs:,.1f} | {ours / theirs:.2f} | "
                     f"{t50 * 1000:,.0f} / {t99 * 1000:,.0f} | {s50 * 1000:,.0f} / "
                     f"{s99 * 1000:,.0f} | {t50 / s50:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
