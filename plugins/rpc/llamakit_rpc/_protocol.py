"""What llamakit needs to know of ggml's RPC protocol (major version 7), and the check of
a worker before a load.

A request is ``| command (1 byte) | payload size (8 bytes, little-endian) | payload |``; a
response, for the commands that have one, is ``| size (8 bytes) | payload |``. One TCP
connection carries one command at a time, each answered before the next is sent.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from ._errors import RpcServerUnreachableError
from ._settings import Server

__all__ = ["PROTOCOL_MAJOR", "Command", "ServerFacts", "probe", "response_size",
           "set_keepalive"]

PROTOCOL_MAJOR = 7


class Command:
    ALLOC_BUFFER = 0
    GET_ALIGNMENT = 1
    GET_MAX_SIZE = 2
    BUFFER_GET_BASE = 3
    FREE_BUFFER = 4
    BUFFER_CLEAR = 5
    SET_TENSOR = 6
    SET_TENSOR_HASH = 7
    GET_TENSOR = 8
    COPY_TENSOR = 9
    GRAPH_COMPUTE = 10
    GET_DEVICE_MEMORY = 11
    INIT_TENSOR = 12
    GET_ALLOC_SIZE = 13
    HELLO = 14
    DEVICE_COUNT = 15
    GRAPH_RECOMPUTE = 16
    MEMSET_TENSOR = 17
    COUNT = 19


# The size of each command's response; commands not listed have none. GET_TENSOR's is the
# size it asks for, the last 8 bytes of its payload.
_RESPONSE_SIZES = {
    Command.ALLOC_BUFFER: 16,  # remote_ptr, remote_size
    Command.GET_ALIGNMENT: 8,
    Command.GET_MAX_SIZE: 8,
    Command.BUFFER_GET_BASE: 8,
    Command.SET_TENSOR_HASH: 1,
    Command.COPY_TENSOR: 1,
    Command.GET_DEVICE_MEMORY: 16,  # free, total
    Command.GET_ALLOC_SIZE: 8,
    Command.HELLO: 28,  # major, minor, patch, padding, 24 bytes of transport capabilities
    Command.DEVICE_COUNT: 4,
}
HELLO_REQUEST_SIZE = 24


def response_size(command: int, payload: bytes | None) -> int | None:
    """How many bytes answer ``command`` (None: no answer). ``payload`` is needed (whole)
    only for GET_TENSOR."""
    if command == Command.GET_TENSOR:
        assert payload is not None and len(payload) >= 8
        return int(struct.unpack_from("<Q", payload, len(payload) - 8)[0])
    return _RESPONSE_SIZES.get(command)


def set_keepalive(sock: socket.socket) -> None:
    """Let the kernel notice a worker whose machine vanished (no FIN, no RST): keepalive
    probes after 10 s of silence, every 5 s, 3 unanswered ones end the connection; data
    left unacknowledged for 30 s does too. A worker that is merely busy computing still
    answers the probes (its kernel does)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3),
                        ("TCP_USER_TIMEOUT", 30_000)):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass(frozen=True)
class ServerFacts:
    """What a worker said about itself during the check."""

    version: tuple[int, int, int]
    alignments: tuple[int, ...]
    max_sizes: tuple[int, ...]
    memory: tuple[tuple[int, int], ...]
    """``(free, total)`` bytes per device."""

    @property
    def n_devices(self) -> int:
        return len(self.alignments)

    @property
    def shape(self) -> tuple[object, ...]:
        """What llama.cpp's client caches per endpoint for the life of the process."""
        return (self.version[:2], self.alignments, self.max_sizes)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("the worker closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _call(sock: socket.socket, command: int, payload: bytes) -> bytes:
    sock.sendall(struct.pack("<BQ", command, len(payload)) + payload)
    expected = response_size(command, payload)
    assert expected is not None
    (size,) = struct.unpack("<Q", _recv_exact(sock, 8))
    if size != expected:
        raise ConnectionError(f"malformed answer to command {command}: {size} bytes, "
                              f"expected {expected}")
    return _recv_exact(sock, size)


def probe(server: Server, *, timeout: float, client_version: tuple[int, int, int]) -> ServerFacts:
    """Connect to ``server``, shake hands and ask for its devices; disconnect.

    Raises :class:`RpcServerUnreachableError` naming the server and the reason (refused,
    no answer within ``timeout``, another protocol version, ...).
    """
    try:
        sock = socket.create_connection((server.host, server.port), timeout=timeout)
    except TimeoutError:
        raise RpcServerUnreachableError(
            f"rpc server {server} did not accept a connection within {timeout:g} s",
            server=str(server)) from None
    except OSError as exc:
        raise RpcServerUnreachableError(
            f"cannot connect to rpc server {server}: {exc.strerror or exc}; is "
            f"`llamakit rpc-server` running there?", server=str(server)) from None
    try:
        with sock:
            set_keepalive(sock)
            hello = _call(sock, Command.HELLO, bytes(HELLO_REQUEST_SIZE))
            version = (hello[0], hello[1], hello[2])
            if version[0] != client_version[0] or version[1] > client_version[1]:
                raise RpcServerUnreachableError(
                    f"rpc server {server} speaks RPC protocol "
                    f"{'.'.join(map(str, version))}, this llamakit-rpc "
                    f"{'.'.join(map(str, client_version))}; run a worker built from the "
                    "same llama.cpp (`llamakit rpc-server` of this llamakit)",
                    server=str(server))
            (count,) = struct.unpack("<I", _call(sock, Command.DEVICE_COUNT, b""))
            if count == 0:
                raise RpcServerUnreachableError(f"rpc server {server} serves no device",
                                                server=str(server))
            alignments, max_sizes, memory = [], [], []
            for device in range(count):
                request = struct.pack("<I", device)
                alignments.append(struct.unpack(
                    "<Q", _call(sock, Command.GET_ALIGNMENT, request))[0])
                max_sizes.append(struct.unpack(
                    "<Q", _call(sock, Command.GET_MAX_SIZE, request))[0])
                free, total = struct.unpack(
                    "<QQ", _call(sock, Command.GET_DEVICE_MEMORY, request))
                memory.append((free, total))
    except TimeoutError:
        raise RpcServerUnreachableError(
            f"rpc server {server} accepted the connection but did not answer within "
            f"{timeout:g} s; a worker serves one client at a time: is another client "
            "using it?", server=str(server)) from None
    except OSError as exc:
        raise RpcServerUnreachableError(
            f"rpc server {server} failed the handshake: {exc}", server=str(server)) from None
    return ServerFacts(version=version, alignments=tuple(alignments),
                       max_sizes=tuple(max_sizes), memory=tuple(memory))
