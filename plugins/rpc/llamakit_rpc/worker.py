"""The worker: serve this machine's CPU to rpc clients (``llamakit rpc-server``).

``python -m llamakit_rpc.worker --host 127.0.0.1 --port 50052`` runs the same code as
``llamakit rpc-server``. ggml's RPC server (``ggml_backend_rpc_start_server``, from the
rpc variant, so worker and client share one llama.cpp) serves one client at a time, until
the process ends.

The RPC protocol has no authentication and no encryption: anyone who reaches the port can
run computations and read or write the worker's memory buffers. The worker therefore
listens on a loopback address unless ``--allow-remote`` is given.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any

from llamakit import ConfigError

__all__ = ["add_arguments", "bind_address", "main", "run", "serve"]

logger = logging.getLogger("llamakit.rpc")

DEFAULT_PORT = 50052
WARNING = ("the RPC protocol has no authentication and no encryption: whoever reaches "
           "{endpoint} can run computations on this machine and read or overwrite the "
           "worker's buffers. Listen only on a trusted network.")


def bind_address(host: str, allow_remote: bool) -> str:
    """The IPv4 address to listen on, checked: a non-loopback one only with
    ``allow_remote``. ``ConfigError`` otherwise."""
    text = host.strip()
    if text.lower() == "localhost":
        text = "127.0.0.1"
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(f"--host {host!r} is not an IP address; the worker listens on an "
                          "IPv4 address (127.0.0.1, or this machine's address on a trusted "
                          "network with --allow-remote)", key="host") from None
    if address.version != 4:
        raise ConfigError(f"--host {host!r}: ggml's RPC server listens on IPv4 addresses "
                          "only", key="host")
    if not address.is_loopback and not allow_remote:
        raise ConfigError(
            f"refusing to listen on {host}: it is not a loopback address, and the RPC "
            "protocol has no authentication or encryption. Pass --allow-remote to listen "
            "there anyway, on a trusted network only (see docs/distributed.md)", key="host")
    return str(address)


def _check_port(address: str, port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"--port must be in 1..65535, got {port!r}", key="port")
    # ggml's server reports a failed bind only as "Failed to create server socket"; try
    # the address first to say why.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {address}:{port}: {exc.strerror or exc}",
                              key="port") from None


def _cpu_device(native: Any) -> Any:
    for device in native.devices():
        if device.registry == "CPU":
            return native.lib.ggml_backend_dev_get(device.index)
    raise ConfigError("the rpc variant has no CPU device to serve")


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, threads: int | None = None,
          allow_remote: bool = False, cache_dir: str | None = None,
          ready: threading.Event | None = None) -> int:
    """Serve until the process ends (or Ctrl-C); returns the exit status if the server
    stops by itself (it could not start)."""
    address = bind_address(host, allow_remote)
    _check_port(address, port)
    if threads is None:
        threads = os.cpu_count() or 1
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"--threads must be an integer >= 1, got {threads!r}", key="threads")
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)

    from llamakit._backends import resolve_backend

    native = resolve_backend("rpc")
    lib, ffi = native.lib, native.ffi
    endpoint = f"{address}:{port}"
    if not ipaddress.ip_address(address).is_loopback:
        logger.warning(WARNING.format(endpoint=endpoint))
        print("llamakit rpc-server: WARNING: " + WARNING.format(endpoint=endpoint),
              file=sys.stderr, flush=True)
    devices = ffi.new("ggml_backend_dev_t[]", [_cpu_device(native)])
    endpoint_c = ffi.new("char[]", endpoint.encode())
    cache_c = ffi.new("char[]", os.fsencode(cache_dir)) if cache_dir is not None else ffi.NULL

    def run_server() -> None:
        # Returns only when the server cannot start (it serves forever otherwise).
        lib.ggml_backend_rpc_start_server(endpoint_c, cache_c, threads, 1, devices)

    # The server loop runs in C; on its own thread the main thread stays in Python, so
    # Ctrl-C and SIGTERM's default action end the process.
    server = threading.Thread(target=run_server, name="llamakit-rpc-server", daemon=True)
    server.start()
    if ready is not None:
        ready.set()
    try:
        while server.is_alive():
            server.join(0.5)
    except KeyboardInterrupt:
        return 130
    print(f"llamakit rpc-server: the server on {endpoint} stopped (see the messages above)",
          file=sys.stderr)
    return 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="IPv4 address to listen on (default 127.0.0.1; a non-loopback "
                             "address needs --allow-remote)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"TCP port (default {DEFAULT_PORT})")
    parser.add_argument("--threads", "-t", type=int, default=None,
                        help="CPU threads for the computations (default: all cores)")
    parser.add_argument("--cache-dir", default=None,
                        help="keep received weights (tensors over 10 MiB) in this folder, so "
                             "that loading the same model again skips sending them")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback --host. The RPC protocol has no "
                             "authentication or encryption: use on trusted networks only")


def run(args: argparse.Namespace) -> int:
    """``llamakit rpc-server``: the command's body."""
    return serve(args.host, args.port, threads=args.threads, allow_remote=args.allow_remote,
                 cache_dir=args.cache_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llamakit_rpc.worker",
        description="Serve this machine's CPU to llamakit's rpc backend (ggml RPC). "
                    "No authentication, no encryption: trusted networks only.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ConfigError as exc:
        print(f"llamakit rpc-server: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
