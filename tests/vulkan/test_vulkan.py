"""The Vulkan backend on lavapipe (CPU-type Vulkan device) and, when present, a real GPU."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import llamakit
from llamakit.testing import require_variant

llamakit_vulkan = pytest.importorskip("llamakit_vulkan")
from llamakit_vulkan._loader import physical_devices  # noqa: E402

ALLOW = {"vulkan": {"allow_cpu_device": True}}
HAS_GPU = any(d.type in ("gpu", "igpu") for d in physical_devices())


@pytest.fixture(scope="module")
def vulkan_ready() -> None:
    """Skip unless the Vulkan variant can be built here and sees a device, and is built or
    asked for (LLAMAKIT_TEST_VARIANTS)."""
    problems = llamakit_vulkan.vulkan_backend().check_prerequisites()
    if problems:
        pytest.skip("Vulkan prerequisites missing: " + "; ".join(map(str, problems)))
    if not physical_devices():
        pytest.skip("no Vulkan device (install mesa-vulkan-drivers for lavapipe)")
    require_variant("vulkan")


@pytest.fixture(scope="module")
def pair(vulkan_ready: None, tiny_model_path: Path) -> Iterator[tuple[llamakit.Model,
                                                                      llamakit.Model]]:
    with llamakit.load_model(tiny_model_path, backend="cpu") as cpu, \
            llamakit.load_model(tiny_model_path, backend="vulkan", n_gpu_layers=-1,
                                backend_settings=ALLOW) as gpu:
        yield cpu, gpu


def _greedy(model: llamakit.Model, prompt: str, n: int = 16) -> list[int]:
    with model.new_context(n_ctx=128, n_threads=2) as ctx:
        return ctx.generate(prompt, max_new_tokens=n, temperature=0).tokens


def test_full_offload_matches_cpu(pair: tuple[llamakit.Model, llamakit.Model]) -> None:
    """All layers on Vulkan give the CPU backend's greedy tokens, in one process."""
    cpu, gpu = pair
    assert gpu.backend == "vulkan" and cpu.backend == "cpu"
    for prompt in ("Hello world", "The quick brown fox"):
        assert _greedy(gpu, prompt) == _greedy(cpu, prompt)


def test_partial_offload_matches_cpu(pair: tuple[llamakit.Model, llamakit.Model],
                                     tiny_model_path: Path) -> None:
    """One layer on Vulkan, the rest on the CPU, still gives the same tokens."""
    cpu, _ = pair
    with llamakit.load_model(tiny_model_path, backend="vulkan", n_gpu_layers=1,
                             backend_settings=ALLOW) as partial:
        assert partial.offload.n_layers_offloaded == 1
        assert _greedy(partial, "Hello world") == _greedy(cpu, "Hello world")


def test_embeddings_agree_with_cpu(pair: tuple[llamakit.Model, llamakit.Model]) -> None:
    """Embeddings from Vulkan and CPU have cosine similarity above 0.999."""
    vectors = []
    for model in pair:
        with model.new_context(n_ctx=128, embeddings=True) as ctx:
            vectors.append(ctx.embeddings(["Hello world", "A second, longer sentence here"]))
    cosine = np.sum(vectors[0] * vectors[1], axis=1)
    assert np.all(cosine > 0.999), cosine


def test_offload_is_reported(pair: tuple[llamakit.Model, llamakit.Model]) -> None:
    """Model.offload names the backend, the device and the layers offloaded."""
    cpu, gpu = pair
    info = gpu.offload
    assert info.backend == "vulkan" and len(info.devices) == 1
    assert info.devices[0].startswith("Vulkan")
    assert info.n_layers_offloaded == info.n_layers_total == gpu.info.n_layer + 1
    assert cpu.offload.n_layers_offloaded == 0 and cpu.offload.devices == ()


def test_listing_and_devices(pair: tuple[llamakit.Model, llamakit.Model]) -> None:
    """backends() and devices() show the Vulkan backend with its device."""
    status = {s.name: s for s in llamakit.backends(ALLOW)}["vulkan"]
    assert status.available and status.priority > 0
    assert any(d.registry == "Vulkan" for d in status.devices)
    assert any(d.registry == "Vulkan" for d in llamakit.devices(ALLOW)["vulkan"])


@pytest.mark.parametrize("kwargs,key", [
    ({"main_gpu": 1}, "main_gpu"),
    ({"main_gpu": -1}, "main_gpu"),
    ({"tensor_split": [1.0, 1.0]}, "tensor_split"),
    ({"tensor_split": [-1.0]}, "tensor_split"),
    ({"tensor_split": [0.0]}, "tensor_split"),
    ({"tensor_split": [float("nan")]}, "tensor_split"),
    ({"tensor_split": "1,1"}, "tensor_split"),
    ({"split_mode": "diagonal"}, "split_mode"),
    ({"n_gpu_layers": -2}, "n_gpu_layers"),
])
def test_invalid_offload_parameters_raise_before_loading(
        pair: tuple[llamakit.Model, llamakit.Model], tiny_model_path: Path,
        kwargs: dict, key: str) -> None:  # type: ignore[type-arg]
    """Every bad offload argument is a ConfigError naming it, raised before llama.cpp loads."""
    arguments = {"n_gpu_layers": -1, **kwargs}
    with pytest.raises(llamakit.ConfigError) as info:
        llamakit.load_model(tiny_model_path, backend="vulkan", backend_settings=ALLOW,
                            **arguments)
    assert info.value.key == key


def test_vulkan_settings_are_validated(vulkan_ready: None, tiny_model_path: Path) -> None:
    """An unknown [backends.vulkan] key is a ConfigError."""
    with pytest.raises(llamakit.ConfigError, match="allow_cpu_devic"):
        llamakit_vulkan.allow_cpu_device({"allow_cpu_devic": True})


def test_link_args_follow_vulkan_sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A VULKAN_SDK holding lib/libvulkan.so puts its lib/ on the module's linker path."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libvulkan.so").write_bytes(b"")
    monkeypatch.setenv("VULKAN_SDK", str(tmp_path))
    assert llamakit_vulkan.vulkan_backend().link_args == (f"-L{tmp_path / 'lib'}", "-lvulkan")
    monkeypatch.setenv("VULKAN_SDK", str(tmp_path / "elsewhere"))
    assert llamakit_vulkan.vulkan_backend().link_args == ("-lvulkan",)


def test_cpu_only_score_is_zero() -> None:
    """The probe scores 0 when no Vulkan device is listed."""
    cpu_device = llamakit.DeviceInfo(index=0, name="CPU", description="x", type="cpu",
                                     memory_free=1, memory_total=1, registry="CPU")
    assert llamakit_vulkan.vulkan_backend().score([cpu_device]) == 0
    assert llamakit_vulkan.vulkan_backend().score([]) == 0


@pytest.mark.skipif(HAS_GPU, reason="this machine has a real GPU")
def test_vulkan_without_usable_device_raises(vulkan_ready: None, tiny_model_path: Path) -> None:
    """Without allow_cpu_device, lavapipe is hidden and backend='vulkan' says why."""
    code = ("import llamakit, sys\n"
            "try:\n"
            f"    llamakit.load_model({str(tiny_model_path)!r}, backend='vulkan')\n"
            "except llamakit.BackendUnavailableError as e:\n"
            "    print('UNAVAILABLE', e); sys.exit(0)\n"
            "sys.exit(3)\n")
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("GGML_VK_VISIBLE_DEVICES", "LLAMAKIT_VULKAN_ALLOW_CPU_DEVICE")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "only CPU-type Vulkan devices" in done.stdout


def _fake_devices(monkeypatch: pytest.MonkeyPatch, *types: str) -> None:
    from llamakit_vulkan._loader import PhysicalDevice

    found = [PhysicalDevice(index=i, name=f"dev{i}", type=t) for i, t in enumerate(types)]
    monkeypatch.setattr(llamakit_vulkan, "physical_devices", lambda: found)


def test_usability_is_decided_before_building(monkeypatch: pytest.MonkeyPatch) -> None:
    """check_usable answers from the Vulkan loader alone: no device, CPU-type devices
    only (unless admitted), or a GPU."""
    monkeypatch.delenv("LLAMAKIT_VULKAN_ALLOW_CPU_DEVICE", raising=False)
    check = llamakit_vulkan.vulkan_backend().check_usable
    _fake_devices(monkeypatch)
    assert "no Vulkan device" in (check({}) or "")
    _fake_devices(monkeypatch, "cpu")
    assert "only CPU-type Vulkan devices (dev0 (cpu))" in (check({}) or "")
    assert check({"allow_cpu_device": True}) is None
    _fake_devices(monkeypatch, "cpu", "gpu")
    assert check({}) is None
    with pytest.raises(llamakit.ConfigError, match="unknown key"):
        check({"allow_cpu": True})


def test_auto_skips_vulkan_without_building_it(monkeypatch: pytest.MonkeyPatch,
                                               tiny_model_path: Path) -> None:
    """With only CPU-type devices, auto moves on (to cpu, or to cuda where that plugin
    finds a GPU) and never builds or loads the vulkan variant (which takes minutes to
    build on a small machine)."""
    import llamakit._backends as backends_module

    monkeypatch.delenv("LLAMAKIT_VULKAN_ALLOW_CPU_DEVICE", raising=False)
    monkeypatch.delenv("LLAMAKIT_BACKEND", raising=False)
    _fake_devices(monkeypatch, "cpu")
    loaded: list[str] = []
    real = backends_module.load_native

    def recording(spec: Any, settings: Any) -> Any:
        loaded.append(spec.name)
        return real(spec, settings)

    monkeypatch.setattr(backends_module, "load_native", recording)
    with llamakit.load_model(tiny_model_path, backend="auto") as model:
        assert model.backend in {"cpu", "cuda"}
    assert "vulkan" not in loaded


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs a real Vulkan GPU")
def test_auto_picks_vulkan_on_a_gpu(tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    fresh_process_host: None) -> None:
    """On a machine with a GPU, auto chooses vulkan over cpu and offloads everything
    (the cuda plugin, whose priority is higher, is disabled for this test)."""
    monkeypatch.delenv("LLAMAKIT_BACKEND", raising=False)  # the suite pins auto to cpu
    monkeypatch.setenv("LLAMAKIT_DISABLE_PLUGINS", "llamakit-cuda")
    with llamakit.load_model(tiny_model_path, backend="auto", n_gpu_layers=-1) as model:
        assert model.backend == "vulkan"
        assert model.offload.n_layers_offloaded == model.info.n_layer + 1
        with llamakit.load_model(tiny_model_path, backend="cpu") as cpu:
            assert _greedy(model, "Hello world") == _greedy(cpu, "Hello world")
