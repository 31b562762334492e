"""The relay: a local endpoint between llama.cpp's RPC client and one worker.

llama.cpp's RPC client aborts the process (``GGML_ABORT``) when a connection fails or an
answer is malformed, and waits forever on a worker that stops answering; its callers have
no error path. So the client never talks to a worker directly: it connects to a relay on
127.0.0.1, which forwards every command to the worker, checks each answer's framing and
size, and waits at most ``response_timeout`` for it (plus TCP keepalive, for a machine
that vanished). When the worker is lost, the relay records why and from then on answers
the client itself, with well-formed placeholder answers of the right size, so that the C
call in progress returns normally; the model's device check (``ModelDevices.check``)
then raises :class:`RpcServerLostError`. A relay that failed stays failed; the next load
health-checks the worker again and gets a new relay (a new endpoint, hence a fresh
connection and fresh state in llama.cpp's client).
"""

from __future__ import annotations

import itertools
import logging
import socket
import struct
import threading
from dataclasses import dataclass

from ._errors import RpcServerLostError
from ._protocol import Command, ServerFacts, response_size, set_keepalive
from ._settings import Server

__all__ = ["Relay", "RelayTimeouts"]

logger = logging.getLogger("llamakit.rpc")

_CHUNK = 1 << 20
_SMALL = 1 << 16  # payloads read whole (all but tensor data and graphs)


@dataclass
class RelayTimeouts:
    connect: float
    response: float


class _UpstreamLost(Exception):
    pass


class _ClientGone(Exception):
    pass


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, _CHUNK))
        if not chunk:
            raise ConnectionError("connection closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class Relay:
    """One worker's local endpoint (``endpoint``, ``127.0.0.1:PORT``) for llama.cpp."""

    def __init__(self, server: Server, facts: ServerFacts, timeouts: RelayTimeouts,
                 client_version: tuple[int, int, int]) -> None:
        self.server = server
        self.facts = facts
        self.timeouts = timeouts
        self.client_version = client_version
        self.failure: str | None = None
        self._lock = threading.Lock()
        self._live = 0  # sessions connected to the worker
        self._fake_ids = itertools.count(1)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.endpoint = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, name=f"llamakit-rpc-relay {server}",
                         daemon=True).start()

    # -- state ---------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether llama.cpp's client holds a healthy connection to the worker now."""
        with self._lock:
            return self._live > 0 and self.failure is None

    def fail(self, reason: str) -> None:
        with self._lock:
            if self.failure is not None:
                return
            self.failure = reason
        logger.error("rpc server %s lost: %s", self.server, reason)

    def check(self) -> None:
        """Raise :class:`RpcServerLostError` if the worker was lost."""
        failure = self.failure
        if failure is not None:
            raise RpcServerLostError(
                f"rpc server {self.server} was lost: {failure}. The model cannot be used "
                "any more; close it and load it again once the worker runs",
                server=str(self.server))

    # -- serving -------------------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # pragma: no cover - the listener lives as long as the process
                return
            threading.Thread(target=self._session, args=(client,), daemon=True,
                             name=f"llamakit-rpc-session {self.server}").start()

    def _connect(self) -> socket.socket | None:
        if self.failure is not None:
            return None
        try:
            upstream = socket.create_connection((self.server.host, self.server.port),
                                                timeout=self.timeouts.connect)
            set_keepalive(upstream)
            upstream.settimeout(self.timeouts.response)
        except OSError as exc:
            self.fail(f"cannot connect: {exc.strerror or exc}")
            return None
        with self._lock:
            self._live += 1
        return upstream

    def _session(self, client: socket.socket) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = _Session(self, client, self._connect())
        try:
            while True:
                session.command()
        except _ClientGone:
            pass
        except Exception:  # pragma: no cover - a bug here must not pass silently
            logger.exception("rpc relay for %s failed", self.server)
            self.fail("internal error of the relay")
        finally:
            client.close()
            session.drop()

    def _dropped(self) -> None:
        with self._lock:
            self._live -= 1

    def _placeholder(self, command: int, payload: bytes | None, size: int) -> bytes:
        """A well-formed answer that keeps llama.cpp's client going (and off its asserts:
        a buffer base is never NULL, an alignment never 0) until the device check raises.
        """
        facts = self.facts

        def device() -> int:
            assert payload is not None
            (index,) = struct.unpack_from("<I", payload)
            return index if index < facts.n_devices else 0

        if command == Command.HELLO:
            return bytes([*self.client_version, 0]) + bytes(size - 4)
        if command == Command.DEVICE_COUNT:
            return struct.pack("<I", facts.n_devices)
        if command == Command.ALLOC_BUFFER:
            assert payload is not None
            _, wanted = struct.unpack_from("<IQ", payload)
            return struct.pack("<QQ", next(self._fake_ids) << 20, wanted)
        if command == Command.BUFFER_GET_BASE:
            return struct.pack("<Q", 1 << 40)
        if command == Command.GET_ALIGNMENT:
            return struct.pack("<Q", facts.alignments[device()])
        if command == Command.GET_MAX_SIZE:
            return struct.pack("<Q", facts.max_sizes[device()])
        if command == Command.GET_DEVICE_MEMORY:
            return struct.pack("<QQ", *facts.memory[device()])
        if command == Command.COPY_TENSOR:
            return b"\x01"
        # SET_TENSOR_HASH: 0 ("not cached", so the data follows); GET_ALLOC_SIZE: 0 (the
        # client then uses the tensor's own size). (GET_TENSOR's zeros are sent in chunks.)
        return bytes(size)


class _Session:
    """One connection of llama.cpp's client, and the relay's connection to the worker
    (``upstream``, None once the worker is lost)."""

    def __init__(self, relay: Relay, client: socket.socket,
                 upstream: socket.socket | None) -> None:
        self.relay = relay
        self.client = client
        self.upstream = upstream

    def drop(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
            self.relay._dropped()

    def lost(self, reason: str) -> None:
        self.relay.fail(reason)
        self.drop()

    def command(self) -> None:
        """Relay one command and its answer."""
        header = self._from_client(9)
        command, size = struct.unpack("<BQ", header)
        payload: bytes | None = None
        if size <= _SMALL:
            payload = self._from_client(size)
            self._to_worker(header + payload)
        else:
            self._to_worker(header)
            left = size
            while left:
                chunk = self._from_client(min(left, _CHUNK), exact=False)
                left -= len(chunk)
                self._to_worker(chunk)
        expected = response_size(command, payload) if command < Command.COUNT else None
        if expected is None:
            return
        sent = -1  # -1: not even the size header went to the client
        upstream = self.upstream
        if upstream is not None:
            timeout = self.relay.timeouts.response
            try:
                (answer,) = struct.unpack("<Q", _recv_exact(upstream, 8))
                if answer != expected:
                    raise _UpstreamLost(f"malformed answer to command {command} "
                                        f"({answer} bytes, expected {expected})")
                self._to_client(struct.pack("<Q", expected))
                sent = 0
                while sent < expected:
                    chunk = upstream.recv(min(expected - sent, _CHUNK))
                    if not chunk:
                        raise ConnectionError("connection closed")
                    self._to_client(chunk)
                    sent += len(chunk)
            except TimeoutError:
                self.lost(f"no answer within {timeout:g} s (response_timeout)")
            except _UpstreamLost as exc:
                self.lost(str(exc))
            except OSError as exc:
                self.lost(f"connection broken ({exc.strerror or exc})")
        if self.upstream is None:
            if sent < 0:
                self._to_client(struct.pack("<Q", expected))
                sent = 0
            if command == Command.GET_TENSOR:  # zeros, possibly many: in chunks
                zeros = bytes(min(expected - sent, _CHUNK))
                while sent < expected:
                    step = min(expected - sent, _CHUNK)
                    self._to_client(zeros[:step])
                    sent += step
            else:
                self._to_client(self.relay._placeholder(command, payload, expected)[sent:])

    def _from_client(self, size: int, exact: bool = True) -> bytes:
        try:
            if exact:
                return _recv_exact(self.client, size)
            chunk = self.client.recv(size)
        except OSError:
            raise _ClientGone from None
        if not chunk:
            raise _ClientGone
        return chunk

    def _to_client(self, data: bytes) -> None:
        try:
            self.client.sendall(data)
        except OSError:
            raise _ClientGone from None

    def _to_worker(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is None:
            return
        try:
            upstream.sendall(data)
        except TimeoutError:
            self.lost(f"the worker took no data for {self.relay.timeouts.response:g} s "
                      "(response_timeout)")
        except OSError as exc:
            self.lost(f"connection broken ({exc.strerror or exc})")
