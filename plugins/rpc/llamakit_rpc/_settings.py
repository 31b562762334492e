"""The rpc backend's settings: ``[backends.rpc]``, or ``load_model`` keywords."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["RpcSettings", "Server", "parse_server"]


@dataclass(frozen=True)
class Server:
    """One worker's address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_server(text: str) -> Server:
    """``"host:port"`` (``"[v6addr]:port"`` for IPv6) as a :class:`Server`; ``ValueError``
    saying what is wrong otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"a server is a 'host:port' string, got {text!r}")
    value = text.strip()
    if not value:
        raise ValueError("a server address is empty; expected 'host:port'")
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{text!r} is not '[ipv6-address]:port'")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in {text!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r} has no port; expected 'host:port' (e.g. "
                             "'192.168.1.20:50052')")
        if not host:
            raise ValueError(f"{text!r} has no host; expected 'host:port'")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, '[{host}]:port'")
    if not port_text.isdigit():
        raise ValueError(f"the port of {text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"the port of {text!r} is outside 1..65535")
    if any(c.isspace() for c in host):
        raise ValueError(f"the host of {text!r} contains white space")
    return Server(host, port)


class RpcSettings(BaseModel):
    """Settings of the rpc backend (``[backends.rpc]``; ``load_model`` keywords override
    them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rpc_servers: list[str] = Field(
        default_factory=list,
        description="The workers (`llamakit rpc-server`) to spread layers over, as "
        "'host:port' ('[ipv6]:port'); a string may list several, comma-separated. Layers "
        "go to them in this order, in proportion to their free memory unless "
        "tensor_split says otherwise.")
    connect_timeout: float = Field(
        5.0, gt=0, le=3600,
        description="Seconds to wait for a worker to accept a connection and answer the "
        "handshake before loading.")
    response_timeout: float = Field(
        300.0, gt=0,
        description="Seconds to wait for one answer of a worker (a graph computation of "
        "its layers, a tensor read) before declaring it lost.")

    @field_validator("rpc_servers", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):  # "a:1,b:2", as llama.cpp's --rpc and env variables
            return [part for part in value.split(",")] if value.strip() else [value]
        return value

    @field_validator("rpc_servers")
    @classmethod
    def _check(cls, value: list[str]) -> list[str]:
        seen: dict[Server, str] = {}
        result = []
        for text in value:
            server = parse_server(text)
            if server in seen:
                raise ValueError(f"{text!r} is listed twice (as {seen[server]!r})")
            seen[server] = text
            result.append(str(server))
        return result

    def servers(self) -> list[Server]:
        return [parse_server(text) for text in self.rpc_servers]
