"""The rpc backend end to end, on 127.0.0.1: two worker processes, a synthetic model split
across them, greedy output equal to the local CPU backend's; a worker killed (SIGKILL) or
stopped (SIGSTOP) mid-generation gives RpcServerLostError, never a hang or an abort of
this process; once workers are back, loading and generating work again.

Builds the rpc variant on first use (cached in ~/.cache/llamakit like the others).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from llamakit_rpc import RpcServerLostError, RpcServerUnreachableError
from llamakit_rpc._protocol import probe
from llamakit_rpc._settings import Server

import llamakit
from llamakit.testing import require_variant

pytestmark = pytest.mark.slow

PROMPT = "Once upon a time"
N_TOKENS = 24
# A generous bound: what a failure must never exceed (a hang would otherwise block CI).
DEADLINE = 120.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Worker:
    """One worker process (``llamakit rpc-server`` or ``python -m llamakit_rpc.worker``) on
    a fixed loopback port."""

    def __init__(self, log_dir: Path, name: str, command: list[str]) -> None:
        self.command = command
        self.port = _free_port()
        self.log = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *self.command, "--host", "127.0.0.1",
                 "--port", str(self.port), "--threads", "1"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + DEADLINE
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited ({self.proc.returncode}): "
                                     f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                probe(Server("127.0.0.1", self.port), timeout=5, client_version=(7, 0, 0))
                return
            except RpcServerUnreachableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.proc = None


@pytest.fixture(scope="module")
def rpc_variant() -> None:
    """Build the variant once, before any worker starts (they would each wait for it)."""
    from llamakit._backends import resolve_backend

    require_variant("rpc")
    resolve_backend("rpc")


@pytest.fixture(scope="module")
def pool(rpc_variant: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    folder = tmp_path_factory.mktemp("rpc-workers")
    # One through the CLI command, one through the module: the same code.
    workers = [Worker(folder, "a", ["llamakit", "rpc-server"]),
               Worker(folder, "b", ["llamakit_rpc.worker"])]
    try:
        yield workers
    finally:
        for worker in workers:
            if worker.proc is not None and worker.proc.poll() is None:
                os.kill(worker.proc.pid, signal.SIGCONT)
            worker.kill()


@pytest.fixture
def workers(pool: list[Worker]) -> list[Worker]:
    """Both workers running (restarted if an earlier test killed one)."""
    for worker in pool:
        if not worker.alive():
            worker.start()
    return pool


@pytest.fixture(scope="module")
def reference(tiny_model_path: Path) -> list[int]:
    with llamakit.load_model(tiny_model_path, backend="cpu") as model, \
            model.new_context(n_ctx=128, n_threads=1) as ctx:
        return ctx.generate(PROMPT, max_new_tokens=N_TOKENS, temperature=0).tokens


def _load(path: Path, workers: list[Worker], **options: Any) -> llamakit.Model:
    return llamakit.load_model(path, backend="rpc", n_gpu_layers=-1,
                               rpc_servers=[w.address for w in workers], **options)


def _bounded(body: Callable[[], Any]) -> Any:
    """Run ``body`` on a thread; fail (instead of hanging the suite) if it outlives
    DEADLINE."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = body()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    if thread.is_alive():
        pytest.fail(f"no result within {DEADLINE:.0f} s: the rpc client hangs")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def test_split_over_two_workers_matches_the_cpu(tiny_model_path: Path, workers: list[Worker],
                                                reference: list[int]) -> None:
    with _load(tiny_model_path, workers) as model:
        offload = model.offload
        assert offload.backend == "rpc"
        assert len(offload.devices) == 2
        assert offload.n_layers_offloaded == offload.n_layers_total == 3
        with model.new_context(n_ctx=128, n_threads=1) as ctx:
            result = ctx.generate(PROMPT, max_new_tokens=N_TOKENS, temperature=0)
    assert len(result.tokens) == N_TOKENS
    assert result.tokens == reference
    for worker in workers:  # both served this client
        assert "Accepted client connection" in worker.log.read_text(errors="replace")


def test_the_config_section_works_like_the_keywords(tiny_model_path: Path,
                                                    workers: list[Worker],
                                                    reference: list[int]) -> None:
    settings = {"rpc": {"rpc_servers": ",".join(w.address for w in workers),
                        "response_timeout": 60}}
    with llamakit.load_model(tiny_model_path, backend="rpc", n_gpu_layers=-1,
                             backend_settings=settings) as model, \
            model.new_context(n_ctx=128, n_threads=1) as ctx:
        assert ctx.generate(PROMPT, max_new_tokens=N_TOKENS, temperature=0).tokens == reference


def test_killed_worker_mid_generation_is_an_error_then_reload_works(
        tiny_model_path: Path, workers: list[Worker], reference: list[int]) -> None:
    model = _load(tiny_model_path, workers)
    ctx = model.new_context(n_ctx=128, n_threads=1)
    pieces: list[str] = []

    def generate_and_kill() -> None:
        for piece in ctx.stream(PROMPT, max_new_tokens=N_TOKENS, temperature=0):
            pieces.append(piece)
            if len(pieces) == 3:
                workers[1].kill()  # SIGKILL, between two decodes of this generation

    with pytest.raises(RpcServerLostError, match="was lost") as info:
        _bounded(generate_and_kill)
    assert info.value.server == workers[1].address
    assert isinstance(info.value, ConnectionError)
    assert len(pieces) >= 3
    # The model stays unusable, with the same error, and closes without hanging.
    with pytest.raises(RpcServerLostError):
        _bounded(lambda: ctx.generate("again", max_new_tokens=2, temperature=0))
    with pytest.raises(RpcServerLostError):  # the KV cache was on the workers
        _bounded(ctx.state_bytes)
    with pytest.raises(RpcServerLostError):
        _bounded(lambda: model.new_context(n_ctx=64, n_threads=1))
    _bounded(model.close)

    # The worker is gone: a load says so up front.
    with pytest.raises(RpcServerUnreachableError, match="cannot connect"):
        _bounded(lambda: _load(tiny_model_path, workers))

    # Back again (same port): load and generate as before.
    workers[1].start()

    def again() -> list[int]:
        with _load(tiny_model_path, workers) as model, \
                model.new_context(n_ctx=128, n_threads=1) as ctx:
            return ctx.generate(PROMPT, max_new_tokens=N_TOKENS, temperature=0).tokens

    assert _bounded(again) == reference


def test_killed_worker_during_a_long_decode(tiny_model_path: Path,
                                            workers: list[Worker]) -> None:
    """The kill lands while a prompt of many batches is being evaluated."""
    with _load(tiny_model_path, workers) as model, \
            model.new_context(n_ctx=2048, n_batch=16, n_ubatch=16, n_threads=1) as ctx:
        prompt = model.tokenize(PROMPT * 150)[:1500]

        def evaluate_until_it_fails() -> None:
            for first in range(100, 10_000):  # a new first token: no prefix to reuse
                ctx.generate([first, *prompt], max_new_tokens=2, temperature=0)

        timer = threading.Timer(0.3, workers[0].kill)
        timer.start()
        try:
            with pytest.raises(RpcServerLostError):
                _bounded(evaluate_until_it_fails)
        finally:
            timer.join()


def test_stopped_worker_times_out(tiny_model_path: Path, workers: list[Worker]) -> None:
    """A worker that stops answering (SIGSTOP: its sockets stay open, no FIN, no RST) is
    declared lost after response_timeout instead of blocking forever."""
    model = _load(tiny_model_path, workers, response_timeout=3)
    try:
        with model.new_context(n_ctx=128, n_threads=1) as ctx:
            assert workers[0].proc is not None
            os.kill(workers[0].proc.pid, signal.SIGSTOP)
            try:
                with pytest.raises(RpcServerLostError, match="response_timeout"):
                    _bounded(lambda: ctx.generate(PROMPT, max_new_tokens=4, temperature=0))
            finally:
                os.kill(workers[0].proc.pid, signal.SIGCONT)
    finally:
        _bounded(model.close)
    workers[0].kill()  # its client connection is gone; start afresh for later tests


def test_unreachable_server_fails_before_loading(tiny_model_path: Path,
                                                 rpc_variant: None) -> None:
    address = f"127.0.0.1:{_free_port()}"
    with pytest.raises(RpcServerUnreachableError, match=address):
        llamakit.load_model(tiny_model_path, backend="rpc", rpc_servers=[address])


@pytest.mark.parametrize("servers", [[""], ["host"], ["host:99999"], ["h:1", "h:1"]])
def test_bad_servers_are_config_errors(tiny_model_path: Path, rpc_variant: None,
                                       servers: list[str]) -> None:
    with pytest.raises(llamakit.ConfigError, match="rpc_servers"):
        llamakit.load_model(tiny_model_path, backend="rpc", rpc_servers=servers)


class ScriptedWorker:
    """Speaks the protocol like a worker with one CPU device for the questions asked
    before a load, then drops the connection at the first other command (as a worker
    that dies while the weights are sent)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.dropped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        answers = {14: bytes([7, 0, 0, 0]) + bytes(24),  # HELLO
                   15: struct.pack("<I", 1),  # DEVICE_COUNT
                   1: struct.pack("<Q", 32),  # GET_ALIGNMENT
                   2: struct.pack("<Q", 2**62),  # GET_MAX_SIZE
                   11: struct.pack("<QQ", 1 << 30, 1 << 31)}  # GET_DEVICE_MEMORY
        with self.listener:
            while not self.dropped.is_set():
                conn, _ = self.listener.accept()
                with conn:
                    while True:
                        header = _recv(conn, 9)
                        if header is None:
                            break
                        command, size = struct.unpack("<BQ", header)
                        if size and _recv(conn, size) is None:
                            break
                        if command not in answers:
                            self.dropped.set()
                            break
                        conn.sendall(struct.pack("<Q", len(answers[command]))
                                     + answers[command])


def _recv(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        try:
            chunk = conn.recv(size - len(data))
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def test_worker_lost_during_the_load(tiny_model_path: Path, workers: list[Worker]) -> None:
    scripted = ScriptedWorker()
    servers = [workers[0].address, scripted.address]
    with pytest.raises(RpcServerLostError, match=scripted.address):
        _bounded(lambda: llamakit.load_model(tiny_model_path, backend="rpc", n_gpu_layers=-1,
                                             tensor_split=[1, 1], rpc_servers=servers))
    assert scripted.dropped.is_set()
