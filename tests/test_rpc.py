"""The rpc backend's pure-Python parts: settings, server addresses, the worker's bind
check, the protocol framing of the relay. No worker, no llama.cpp build."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading

import pytest
from llamakit_rpc import RpcServerLostError, RpcServerUnreachableError, RpcSettings
from llamakit_rpc._protocol import Command, ServerFacts, probe, response_size
from llamakit_rpc._relay import Relay, RelayTimeouts
from llamakit_rpc._settings import Server, parse_server
from llamakit_rpc.worker import bind_address
from pydantic import ValidationError

import llamakit


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:50052", Server("127.0.0.1", 50052)),
    (" worker-3.lan:1 ", Server("worker-3.lan", 1)),
    ("[::1]:65535", Server("::1", 65535)),
])
def test_server_addresses_parse(text: str, expected: Server) -> None:
    assert parse_server(text) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty"),
    ("   ", "empty"),
    ("host", "no port"),
    ("host:", "not a number"),
    (":50052", "no host"),
    ("host:99999", "outside 1..65535"),
    ("host:0", "outside 1..65535"),
    ("host:-1", "not a number"),
    ("host:5x", "not a number"),
    ("::1:80", "brackets"),
    ("[::1]80", "ipv6-address"),
    ("[nothost]:80", "not an IPv6"),
    ("a b:80", "white space"),
])
def test_bad_server_addresses_are_value_errors(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_server(text)
    with pytest.raises(ValidationError, match=reason):
        RpcSettings(rpc_servers=[text])


def test_settings_normalise_split_and_reject_duplicates() -> None:
    settings = RpcSettings(rpc_servers="10.0.0.2:50052, 10.0.0.3:50052")  # type: ignore[arg-type]
    assert settings.rpc_servers == ["10.0.0.2:50052", "10.0.0.3:50052"]
    assert settings.servers() == [Server("10.0.0.2", 50052), Server("10.0.0.3", 50052)]
    with pytest.raises(ValidationError, match="listed twice"):
        RpcSettings(rpc_servers=["h:1", " h:1"])
    with pytest.raises(ValidationError, match="empty"):
        RpcSettings(rpc_servers="")  # type: ignore[arg-type]
    for bad in ({"connect_timeout": 0}, {"response_timeout": -1}, {"rpc_server": ["h:1"]}):
        with pytest.raises(ValidationError):
            RpcSettings(**bad)  # type: ignore[arg-type]


def test_the_config_section_is_validated_by_the_backend(tmp_path: object) -> None:
    """[backends.rpc] reaches load_model through the generic backend-options path; a bad
    value there is a ConfigError naming the dotted key, before anything is loaded."""
    from llamakit._backends import backend_model_devices

    class FakeNative:
        backend = "rpc"

    bad_table = {"rpc": {"rpc_servers": ["host:99999"]}}
    with pytest.raises(llamakit.ConfigError, match=r"backends\.rpc\.rpc_servers") as info:
        backend_model_devices(FakeNative(), bad_table, {})  # type: ignore[arg-type]
    assert info.value.key is not None and info.value.key.startswith("backends.rpc.rpc_servers")
    with pytest.raises(llamakit.ConfigError, match="rpc_servers"):
        backend_model_devices(FakeNative(), {}, {"rpc_servers": ["host"]})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rpc_server'.*takes connect_timeout"):
        backend_model_devices(FakeNative(), {}, {"rpc_server": ["h:1"]})  # type: ignore[arg-type]
    with pytest.raises(llamakit.ConfigError, match="needs its workers"):
        backend_model_devices(FakeNative(), {}, {})  # type: ignore[arg-type]


def test_backends_without_options_refuse_keywords(tiny_model_path: object) -> None:
    with pytest.raises(TypeError, match="backend 'cpu' takes no backend options"):
        llamakit.load_model(tiny_model_path, backend="cpu",  # type: ignore[arg-type]
                            rpc_servers=["127.0.0.1:50052"])


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "localhost", " LOCALHOST "])
def test_worker_listens_on_loopback_by_default(host: str) -> None:
    assert ipaddress_is_loopback(bind_address(host, allow_remote=False))


def ipaddress_is_loopback(address: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(address).is_loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "10.0.0.2"])
def test_worker_refuses_remote_addresses_without_the_flag(host: str) -> None:
    with pytest.raises(llamakit.ConfigError, match="--allow-remote") as info:
        bind_address(host, allow_remote=False)
    assert info.value.key == "host"
    assert bind_address(host, allow_remote=True) == host


@pytest.mark.parametrize(("host", "reason"), [("example.org", "not an IP address"),
                                              ("::1", "IPv4"), ("", "not an IP address")])
def test_worker_refuses_what_ggml_cannot_bind(host: str, reason: str) -> None:
    with pytest.raises(llamakit.ConfigError, match=reason):
        bind_address(host, allow_remote=True)


@pytest.mark.parametrize(("command", "status"), [(["llamakit_rpc.worker"], 2),
                                                  (["llamakit", "rpc-server"], 1)])
def test_worker_command_refuses_remote_bind(command: list[str], status: int) -> None:
    """The worker process exits with an error before it loads anything."""
    result = subprocess.run([sys.executable, "-m", *command, "--host", "0.0.0.0",
                             "--port", "50099"], capture_output=True, text=True, timeout=120)
    assert result.returncode == status
    assert "refusing to listen on 0.0.0.0" in result.stderr
    assert "no authentication or encryption" in result.stderr
    assert "--allow-remote" in result.stderr


def test_response_sizes() -> None:
    assert response_size(Command.HELLO, None) == 28
    assert response_size(Command.GRAPH_COMPUTE, None) is None
    assert response_size(Command.SET_TENSOR, None) is None
    get_tensor = bytes(296) + struct.pack("<QQ", 0, 12345)
    assert response_size(Command.GET_TENSOR, get_tensor) == 12345


class FakeWorker:
    """A scripted worker: answers HELLO and DEVICE_COUNT, then misbehaves as told."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with self.listener:
            conn, _ = self.listener.accept()
        with conn:
            while not self.stop.is_set():
                header = _recv(conn, 9)
                if header is None:
                    return
                command, size = struct.unpack("<BQ", header)
                payload = _recv(conn, size) if size else b""
                if command == Command.HELLO:
                    conn.sendall(struct.pack("<Q", 28) + bytes([7, 0, 0, 0]) + bytes(24))
                elif command == Command.DEVICE_COUNT and self.behaviour == "wrong-size":
                    conn.sendall(struct.pack("<Q", 5) + bytes(5))
                elif command == Command.DEVICE_COUNT and self.behaviour == "close":
                    return
                elif command == Command.DEVICE_COUNT and self.behaviour == "silent":
                    self.stop.wait(30)
                    return
                elif command == Command.GET_TENSOR and self.behaviour == "close-mid-answer":
                    conn.sendall(struct.pack("<Q", response_size(command, payload) or 0)
                                 + b"\x07" * 3)
                    return


def _recv(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        try:
            chunk = conn.recv(size - len(data))
        except OSError:  # the relay reset the connection
            return None
        if not chunk:
            return None
        data += chunk
    return data


def _call(sock: socket.socket, command: int, payload: bytes) -> bytes:
    sock.sendall(struct.pack("<BQ", command, len(payload)) + payload)
    (size,) = struct.unpack("<Q", _recv(sock, 8) or b"")
    return _recv(sock, size) or b""


FACTS = ServerFacts(version=(7, 0, 0), alignments=(32,), max_sizes=(2**63,),
                    memory=((1 << 30, 2 << 30),))


@pytest.mark.parametrize("behaviour", ["wrong-size", "close", "silent"])
def test_relay_answers_for_a_lost_worker(behaviour: str) -> None:
    """Whatever the worker does (a malformed answer, a closed connection, silence), the
    client gets a well-formed answer of the size it expects, and the relay records why."""
    worker = FakeWorker(behaviour)
    relay = Relay(Server("127.0.0.1", worker.port), FACTS,
                  RelayTimeouts(connect=2, response=0.5), (7, 0, 0))
    host, port = relay.endpoint.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as client:
        assert _call(client, Command.HELLO, bytes(24))[:3] == bytes([7, 0, 0])
        relay.check()
        assert _call(client, Command.DEVICE_COUNT, b"") == struct.pack("<I", 1)
        with pytest.raises(RpcServerLostError, match="was lost") as info:
            relay.check()
        assert {"wrong-size": "malformed", "close": "broken",
                "silent": "response_timeout"}[behaviour] in str(info.value)
        assert info.value.server == f"127.0.0.1:{worker.port}"
        # Later commands are answered by the relay itself.
        base = _call(client, Command.BUFFER_GET_BASE, struct.pack("<Q", 1))
        assert struct.unpack("<Q", base)[0] != 0
        assert _call(client, Command.GET_ALIGNMENT, struct.pack("<I", 0)) == \
            struct.pack("<Q", 32)
        tensor = _call(client, Command.GET_TENSOR, bytes(296) + struct.pack("<QQ", 0, 100))
        assert tensor == bytes(100)
    worker.stop.set()


def test_relay_completes_an_answer_cut_short() -> None:
    worker = FakeWorker("close-mid-answer")
    relay = Relay(Server("127.0.0.1", worker.port), FACTS,
                  RelayTimeouts(connect=2, response=5), (7, 0, 0))
    host, port = relay.endpoint.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as client:
        _call(client, Command.HELLO, bytes(24))
        data = _call(client, Command.GET_TENSOR, bytes(296) + struct.pack("<QQ", 0, 10))
        assert data == b"\x07" * 3 + bytes(7)
        with pytest.raises(RpcServerLostError, match="broken"):
            relay.check()


def test_probe_names_the_problem() -> None:
    with socket.create_server(("127.0.0.1", 0)) as unused:
        port = unused.getsockname()[1]
    with pytest.raises(RpcServerUnreachableError, match="cannot connect") as info:
        probe(Server("127.0.0.1", port), timeout=2, client_version=(7, 0, 0))
    assert isinstance(info.value, ConnectionError) and isinstance(info.value, llamakit.BackendError)
    # Accepts, never answers: a worker busy with another client looks like this.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        with pytest.raises(RpcServerUnreachableError, match="one client at a time"):
            probe(Server("127.0.0.1", port), timeout=0.5, client_version=(7, 0, 0))


def test_auto_never_picks_rpc(monkeypatch: pytest.MonkeyPatch,
                              fresh_process_host: None) -> None:
    """Without its workers the rpc backend is no use: `auto` skips it even when it is the
    only backend left."""
    from llamakit._backends import resolve_backend
    from llamakit._plugins import manager

    others = {spec.plugin for spec in manager.get_plugin_host().backends().values()}
    assert "llamakit-rpc" in others
    monkeypatch.setenv("LLAMAKIT_DISABLE_PLUGINS", ",".join(sorted(others - {"llamakit-rpc"})))
    manager.reset_plugin_host(None)  # rebuilt with the disables (the fixture restores it)
    assert set(manager.get_plugin_host().backends()) == {"rpc"}
    with pytest.raises(llamakit.BackendUnavailableError, match="pip install llamakit-cpu"):
        resolve_backend("auto")
