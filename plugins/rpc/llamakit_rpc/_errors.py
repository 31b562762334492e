"""The rpc backend's errors: ``BackendError``s (and ``ConnectionError``s) naming the
worker."""

from __future__ import annotations

from llamakit import BackendError

__all__ = ["RpcServerError", "RpcServerLostError", "RpcServerUnreachableError"]


class RpcServerError(BackendError, ConnectionError):
    """Base of the rpc backend's errors; ``server`` is the worker's ``host:port``."""

    def __init__(self, message: str, *, server: str) -> None:
        self.server = server
        super().__init__(message, backend="rpc")


class RpcServerUnreachableError(RpcServerError):
    """Before a load: a worker refused the connection, did not answer the handshake in
    time, or speaks another protocol version."""


class RpcServerLostError(RpcServerError):
    """A worker's connection broke, or it did not answer within ``response_timeout``,
    while a model used it. The model is unusable from then on (every call that reaches
    the workers raises this again); close it and load again once the worker is back."""
