"""llamakit's rpc backend: spread a model's layers over llama.cpp RPC workers.

``load_model(path, backend="rpc", rpc_servers=["10.0.0.2:50052", "10.0.0.3:50052"],
n_gpu_layers=-1)`` puts the layers on the workers' devices (the rest, and the sampling,
stay on this machine); ``[backends.rpc]`` in the config holds the same settings
(:class:`RpcSettings`). A worker is ``llamakit rpc-server`` (or
``python -m llamakit_rpc.worker``) on each machine. The RPC protocol has no
authentication or encryption: see docs/distributed.md before listening on a network.

A worker that dies or stops answering never takes the client process down: the load or
the decode that needed it raises :class:`RpcServerLostError` (before a load, an
unreachable worker is :class:`RpcServerUnreachableError`).
"""

from __future__ import annotations

from llamakit import BackendSpec, CommandSpec, hookimpl

from ._errors import RpcServerError, RpcServerLostError, RpcServerUnreachableError
from ._settings import RpcSettings
from ._spec import rpc_backend

__all__ = ["RpcServerError", "RpcServerLostError", "RpcServerUnreachableError", "RpcSettings",
           "llamakit_register_backends", "llamakit_register_commands", "rpc_backend"]


@hookimpl
def llamakit_register_backends() -> list[BackendSpec]:
    return [rpc_backend()]


@hookimpl
def llamakit_register_commands() -> list[CommandSpec]:
    from . import worker

    return [CommandSpec(
        name="rpc-server",
        help="serve this machine's CPU to rpc clients (no authentication: trusted "
             "networks only)",
        configure=worker.add_arguments, run=worker.run)]
