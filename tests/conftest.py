"""Shared fixtures: a tiny synthetic model loaded once on the CPU backend.

The generic fixtures (llama.cpp tree, synthetic model writers) come from
``llamakit.testing.fixtures``, registered as a pytest plugin by llamakit's entry point.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import llamakit
from llamakit._plugins.manager import PluginHost

# A variant initialises its devices once per process, so the first test that touches the
# Vulkan backend would decide for all of them whether lavapipe (a CPU-type Vulkan device)
# is visible. Admit it for the whole session, and keep `auto` on the CPU unless a test
# asks for a backend by name or sets LLAMAKIT_BACKEND itself.
os.environ.setdefault("LLAMAKIT_VULKAN_ALLOW_CPU_DEVICE", "1")
os.environ.setdefault("LLAMAKIT_BACKEND", "cpu")

# A shell that starts the suite in the background (`cmd &` without job control) makes it
# ignore SIGINT, and an ignored signal stays ignored in Python and in every child process:
# the Ctrl-C tests would then fail for the launcher's sake. Catch it as Python does by
# default (children then start with the default action again).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def fresh_process_host() -> Iterator[None]:
    """The process-wide plugin host is rebuilt on its first use in the test (so that it
    sees the test's environment, e.g. LLAMAKIT_DISABLE_PLUGINS) and restored afterwards."""
    from llamakit._plugins import manager

    old = manager.reset_plugin_host(None)
    try:
        yield
    finally:
        manager.reset_plugin_host(old)


@pytest.fixture
def host() -> Iterator[PluginHost]:
    """A fresh process-wide plugin host with the installed plugins; restored afterwards."""
    from llamakit._plugins import manager

    fresh = manager.PluginHost()
    old = manager.reset_plugin_host(fresh)
    try:
        yield fresh
    finally:
        manager.reset_plugin_host(old)


@pytest.fixture(scope="session")
def model(tiny_model_path: Path) -> Iterator[llamakit.Model]:
    with llamakit.load_model(tiny_model_path, backend="cpu") as loaded:
        yield loaded


@pytest.fixture
def ctx(model: llamakit.Model) -> Iterator[llamakit.Context]:
    with model.new_context(n_ctx=256, n_batch=64, n_threads=2) as context:
        yield context


@pytest.fixture(autouse=True)
def _fresh_ambient_config() -> Iterator[None]:
    """No test sees the process config another test loaded (a file rewritten in place
    within the clock's resolution would otherwise keep its old values)."""
    from llamakit._config import clear_ambient_config

    yield
    clear_ambient_config()
