"""A real ``llamakit serve --demo`` subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llamakit_server")
openai = pytest.importorskip("openai")

KEY = "sk-test-0123456789"


@dataclass
class Served:
    """A running server: its URL, key and process."""

    url: str
    key: str | None
    process: subprocess.Popen[bytes]
    #: every client handed out, closed by ``stop`` (an unclosed client's pooled socket
    #: would be collected during a later test, which pytest reports as that test's error)
    clients: list[Any] = field(default_factory=list)

    def client(self, key: str | None = None) -> Any:
        client = openai.OpenAI(base_url=self.url + "/v1", api_key=key or self.key or "none",
                               max_retries=0, timeout=120)
        self.clients.append(client)
        return client

    def raw(self, method: str, path: str, body: bytes | None = None, *,
            key: str | None = "default", headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str], Any]:
        """One HTTP exchange without the client: status, headers, parsed JSON (or text)."""
        sent = dict(headers or {})
        token = self.key if key == "default" else key
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if body is not None:
            sent.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, got, text = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            status, got, text = error.code, dict(error.headers), error.read()
        try:
            return status, got, json.loads(text)
        except ValueError:
            return status, got, text.decode()

    def metric(self, name: str) -> float:
        _, _, text = self.raw("GET", "/metrics")
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in /metrics")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(*flags: str, model: Path | None = None) -> list[str]:
    served = ["-m", str(model)] if model is not None else ["--demo"]
    return [sys.executable, "-m", "llamakit", "serve", *served, "--n-threads", "2", *flags]


def start(*flags: str, key: str | None = KEY, model: Path | None = None) -> Served:
    port = free_port()
    args = serve_command("--port", str(port), *flags, model=model)
    if key:
        args += ["--api-key", key]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMAKIT_")}
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    served = Served(f"http://127.0.0.1:{port}", key, process)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"llamakit serve exited with {process.returncode}:\n{out}")
        try:
            if served.raw("GET", "/health")[0] == 200:
                return served
        except OSError:
            time.sleep(0.2)
    stop(served)
    raise AssertionError("llamakit serve did not become healthy")


def stop(served: Served) -> int:
    for client in served.clients:
        client.close()
    served.clients.clear()
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
        try:
            served.process.wait(60)
        except subprocess.TimeoutExpired:
            served.process.kill()
            served.process.wait()
    if served.process.stdout:
        served.process.stdout.close()
    return served.process.returncode
