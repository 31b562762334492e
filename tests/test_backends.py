"""Backend listing and selection: by name, by environment, and 'auto'."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

import llamakit
from llamakit import BackendSpec, DeviceInfo, Prerequisite, _backends, hookimpl
from llamakit._backends import resolve_backend
from llamakit._plugins import manager
from llamakit._plugins.manager import PluginHost


def _zero(devices: Sequence[DeviceInfo]) -> float:
    return 0.0


def test_unbuildable_backend_is_unavailable_with_reason(host: PluginHost) -> None:
    """A backend whose prerequisites are missing is listed as unavailable, saying what."""
    class Plugin:
        @hookimpl
        def llamakit_register_backends(self) -> Sequence[BackendSpec]:
            return [BackendSpec(
                name="needs-stuff", priority=50, description="test", libraries=(),
                check_prerequisites=lambda: [
                    Prerequisite("no frobnicator", "apt-get install frob")])]

    host.register(Plugin(), name="stuff-plugin")
    status = {s.name: s for s in llamakit.backends()}["needs-stuff"]
    assert not status.available and "frobnicator" in status.reason
    assert "apt-get install frob" in status.reason


def test_auto_skips_unusable_backends(host: PluginHost) -> None:
    """auto passes over a higher-priority backend that cannot run and picks cpu."""
    class Plugin:
        @hookimpl
        def llamakit_register_backends(self) -> Sequence[BackendSpec]:
            return [BackendSpec(
                name="broken", priority=100, description="test", libraries=(),
                check_prerequisites=lambda: [Prerequisite("missing sdk", "apt-get install sdk")])]

    host.register(Plugin(), name="broken-plugin")
    assert resolve_backend("auto").backend != "broken"
    with pytest.raises(llamakit.BackendUnavailableError, match="missing sdk"):
        resolve_backend("broken")


def test_backend_with_zero_score_is_unavailable(host: PluginHost,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A built backend whose probe scores 0 is refused by name and skipped by auto."""
    cpu = host.backends()["cpu"]
    cpu_native = _backends.load_native(cpu)

    class Plugin:
        @hookimpl
        def llamakit_register_backends(self) -> Sequence[BackendSpec]:
            return [BackendSpec(name="cpu-zero", priority=100, description="test",
                                libraries=(), score=_zero)]

    # The fake backend probes the CPU module's devices and scores them 0.
    real_load = _backends.load_native
    monkeypatch.setattr(_backends, "load_native",
                        lambda spec, settings=None: cpu_native if spec.name == "cpu-zero"
                        else real_load(spec, settings))
    host.register(Plugin(), name="zero-plugin")
    with pytest.raises(llamakit.BackendUnavailableError, match="no usable device"):
        resolve_backend("cpu-zero")
    assert resolve_backend(None).backend != "cpu-zero"


def test_no_backends_installed(monkeypatch: pytest.MonkeyPatch,
                               fresh_process_host: None) -> None:
    """With every plugin disabled, auto says to install llamakit-cpu."""
    monkeypatch.setenv("LLAMAKIT_DISABLE_PLUGINS", ",".join(manager.FIRST_PARTY))
    with pytest.raises(llamakit.BackendUnavailableError, match="llamakit-cpu"):
        resolve_backend("auto")
