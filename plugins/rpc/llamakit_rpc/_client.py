"""The client side: the devices of a model's workers, behind relays (``_relay.py``)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from llamakit import BackendUnavailableError, ConfigError, DeviceInfo, ModelDevices

from ._errors import RpcServerUnreachableError
from ._protocol import PROTOCOL_MAJOR, probe
from ._relay import Relay, RelayTimeouts
from ._settings import RpcSettings, Server

__all__ = ["client_version", "model_devices"]

logger = logging.getLogger("llamakit.rpc")

_relays: dict[Server, Relay] = {}
_relays_lock = threading.Lock()
# ggml_backend_rpc_add_server() keeps a registry per endpoint for the life of the process;
# one lock keeps two loads from racing through it.
_add_lock = threading.Lock()


def client_version(native: Any) -> tuple[int, int, int]:
    """The RPC protocol version the variant's client was compiled with."""
    lib = native.lib
    return (int(lib.RPC_PROTO_MAJOR_VERSION), int(lib.RPC_PROTO_MINOR_VERSION),
            int(lib.RPC_PROTO_PATCH_VERSION))


def _relay_for(server: Server, settings: RpcSettings,
               version: tuple[int, int, int]) -> Relay:
    timeouts = RelayTimeouts(connect=settings.connect_timeout,
                             response=settings.response_timeout)
    with _relays_lock:
        relay = _relays.get(server)
        if relay is not None and relay.connected:
            # A model of this process holds the worker (it serves one client at a time,
            # so a probe would wait); llama.cpp shares that connection.
            relay.timeouts = timeouts
            return relay
    facts = probe(server, timeout=settings.connect_timeout, client_version=version)
    with _relays_lock:
        relay = _relays.get(server)
        # llama.cpp caches a device's alignment and maximum buffer size per endpoint for
        # good: a worker that answers differently now gets a new endpoint, and so does
        # one whose relay failed (its connection state in llama.cpp is spent).
        if relay is None or relay.failure is not None or relay.facts.shape != facts.shape:
            relay = Relay(server, facts, timeouts, version)
            _relays[server] = relay
        else:
            relay.timeouts = timeouts
            relay.facts = facts
        return relay


def model_devices(native: Any, settings: RpcSettings) -> ModelDevices:
    """``BackendSpec.model_devices`` of the rpc backend: check every worker, then give
    llama.cpp their devices (through relays), in the order of ``rpc_servers``."""
    servers = settings.servers()
    if not servers:
        raise ConfigError("the rpc backend needs its workers: load_model(..., backend='rpc', "
                          "rpc_servers=['host:port', ...]) or rpc_servers in [backends.rpc]",
                          key="backends.rpc.rpc_servers")
    version = client_version(native)
    if version[0] != PROTOCOL_MAJOR:
        raise BackendUnavailableError(
            f"this llama.cpp speaks RPC protocol {version[0]}, llamakit-rpc's relay knows "
            f"{PROTOCOL_MAJOR}; update llamakit-rpc", backend="rpc")
    relays = [_relay_for(server, settings, version) for server in servers]
    lib, ffi = native.lib, native.ffi
    devices: list[Any] = []
    described: list[DeviceInfo] = []
    with _add_lock:
        for relay in relays:
            reg = lib.ggml_backend_rpc_add_server(relay.endpoint.encode())
            relay.check()
            if reg == ffi.NULL:
                raise RpcServerUnreachableError(f"rpc server {relay.server} serves no device",
                                                server=str(relay.server))
            for i in range(int(lib.ggml_backend_reg_dev_count(reg))):
                dev = lib.ggml_backend_reg_dev_get(reg, i)
                free, total = relay.facts.memory[i] if i < len(relay.facts.memory) else (0, 0)
                devices.append(dev)
                described.append(DeviceInfo(
                    index=len(described),
                    name=ffi.string(lib.ggml_backend_dev_name(dev)).decode(errors="replace"),
                    description=f"rpc server {relay.server}, device {i}",
                    type="gpu", memory_free=free, memory_total=total, registry="RPC"))
    if len(devices) > native.max_devices():
        raise ConfigError(f"the rpc servers have {len(devices)} devices together; llama.cpp "
                          f"takes at most {native.max_devices()}", key="backends.rpc.rpc_servers")
    logger.info("rpc: devices %s", ", ".join(f"{d.name} ({d.description})" for d in described))

    def check() -> None:
        for relay in relays:
            relay.check()

    return ModelDevices(devices=devices, accelerators=described, check=check)
