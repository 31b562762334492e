"""The CUDA plugin without a GPU: registration, selection order, the probe, prerequisite
messages, build flags and settings. Runs everywhere (CI has no NVIDIA driver); a fake
driver library and fake toolkit folders stand in for NVIDIA's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import llamakit
from llamakit import BuildError, DeviceInfo, _backends
from llamakit._backends import resolve_backend
from llamakit._build.variant import _lib_key, build_variant
from llamakit._plugins.manager import PluginHost

llamakit_cuda = pytest.importorskip("llamakit_cuda")
from llamakit_cuda import _arch  # noqa: E402

Maker = Callable[..., Path]  # the make_toolkit fixture (tests/cuda/conftest.py)


def _device(registry: str, index: int = 0) -> DeviceInfo:
    return DeviceInfo(index=index, name=f"{registry}{index}", description="d",
                      type="cpu" if registry == "CPU" else "gpu", memory_free=1,
                      memory_total=2, registry=registry)


class _FakeNative:
    def __init__(self, backend: str, devices: Sequence[DeviceInfo]) -> None:
        self.backend = backend
        self._devices = list(devices)

    def devices(self) -> list[DeviceInfo]:
        return self._devices


def _record_loads(monkeypatch: pytest.MonkeyPatch, usable: set[str]) -> list[str]:
    """Replace loading a variant (building it first) by a recorder: the backends in
    ``usable`` load as if built with one device of their registry, the others fail."""
    tried: list[str] = []
    registries = {"cuda": "CUDA", "vulkan": "Vulkan", "cpu": "CPU"}

    def load(spec: llamakit.BackendSpec, settings: Any = None) -> _FakeNative:
        tried.append(spec.name)
        if spec.name not in usable:
            raise BuildError(f"{spec.name}: not built in this test", backend=spec.name)
        device = _device(registries.get(spec.name, "X"))
        return _FakeNative(spec.name, [device])

    monkeypatch.setattr(_backends, "load_native", load)
    return tried


def _ours(tried: list[str]) -> list[str]:
    """The attempts on the three first-party backends (other installed plugins may be
    tried too)."""
    return [name for name in tried if name in ("cuda", "vulkan", "cpu")]


# --- registration and the order of `auto` ---------------------------------------------

def test_registered_above_vulkan_and_cpu(host: PluginHost) -> None:
    """The installed plugin registers 'cuda' with a priority above vulkan's and the CPU's."""
    specs = host.backends()
    assert specs["cuda"].plugin == "llamakit-cuda"
    assert specs["cuda"].priority > specs["vulkan"].priority > specs["cpu"].priority
    assert "ggml/src/ggml-cuda/libggml-cuda.a" in specs["cuda"].libraries
    assert specs["cuda"].libraries[0] == "src/libllama.a"


def test_auto_tries_cuda_then_vulkan_then_cpu(host: PluginHost, fake_driver: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """With a usable CUDA device auto tries cuda first, then vulkan, then cpu."""
    tried = _record_loads(monkeypatch, usable=set())
    with pytest.raises(llamakit.BackendUnavailableError):
        resolve_backend("auto", {})
    assert _ours(tried) == ["cuda", "vulkan", "cpu"]


def test_auto_picks_cuda_when_usable(host: PluginHost, fake_driver: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tried = _record_loads(monkeypatch, usable={"cuda", "vulkan", "cpu"})
    assert resolve_backend("auto", {}).backend == "cuda"
    assert _ours(tried) == ["cuda"]


def test_auto_skips_cuda_without_building_when_no_driver(
        host: PluginHost, no_driver: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No driver: auto does not even try to build cuda, and goes on to vulkan."""
    tried = _record_loads(monkeypatch, usable={"vulkan", "cpu"})
    assert resolve_backend("auto", {}).backend == "vulkan"
    assert _ours(tried) == ["vulkan"]
    with pytest.raises(llamakit.BackendUnavailableError, match="no NVIDIA driver") as info:
        resolve_backend("cuda", {})
    assert no_driver in str(info.value)
    assert _ours(tried) == ["vulkan"]  # the request by name did not build either


def test_auto_skips_cuda_when_no_device_is_covered(host: PluginHost, fake_driver: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A device the build's architectures cannot run on (ggml-cuda would abort on it) makes
    the backend unusable, with the reason, before anything is built."""
    monkeypatch.setenv("FAKE_CU_CC0", "7.5")
    monkeypatch.setenv(llamakit_cuda.ARCHITECTURES_ENV, "90")
    tried = _record_loads(monkeypatch, usable={"cuda", "vulkan", "cpu"})
    assert resolve_backend("auto", {}).backend == "vulkan"
    with pytest.raises(llamakit.BackendUnavailableError,
                       match=r"compute capability 7\.5.*add 75") as info:
        resolve_backend("cuda", {})
    assert "Fake GPU 0" in str(info.value)
    assert "cuda" not in tried


def test_one_uncovered_device_of_two_is_refused(fake_driver: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """ggml-cuda uses every visible device, so one it cannot run on is one too many."""
    monkeypatch.setenv("FAKE_CU_COUNT", "2")
    monkeypatch.setenv("FAKE_CU_CC1", "8.6")
    monkeypatch.setenv(llamakit_cuda.ARCHITECTURES_ENV, "90-real")
    reason = llamakit_cuda.cuda_backend().check_usable({})
    assert reason is not None and "1: Fake GPU 1, compute capability 8.6" in reason
    assert "CUDA_VISIBLE_DEVICES" in reason
    assert llamakit_cuda.cuda_backend().score([_device("CUDA", 0), _device("CUDA", 1)]) == 0
    monkeypatch.setenv(llamakit_cuda.ARCHITECTURES_ENV, "86;90")
    assert llamakit_cuda.cuda_backend().check_usable({}) is None
    assert llamakit_cuda.cuda_backend().score([_device("CUDA", 0), _device("CUDA", 1)]) == 2


def test_score_counts_only_cuda_devices(fake_driver: Path) -> None:
    spec = llamakit_cuda.cuda_backend()
    assert spec.score([_device("CPU")]) == 0
    assert spec.score([]) == 0
    assert spec.score([_device("CPU"), _device("CUDA")]) == 1


# --- the probe ---------------------------------------------------------------------------

@pytest.fixture
def empty_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A cache where nothing is built, so listing backends loads no variant."""
    monkeypatch.setenv("LLAMAKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_probe_without_driver_says_unavailable(host: PluginHost, no_driver: str,
                                               empty_cache: Path) -> None:
    """Without a driver the probe works and says why the backend cannot run."""
    found = llamakit_cuda.probe({})
    assert not found.available and not found.built
    assert found.reason.startswith("unavailable: no NVIDIA driver")
    assert found.devices == ()
    assert str(found).startswith("cuda: unavailable: no NVIDIA driver")
    status = {s.name: s for s in llamakit.backends({})}["cuda"]
    assert status.reason == found.reason and not status.available


def test_probe_without_device_says_unavailable(host: PluginHost, fake_driver: Path,
                                               empty_cache: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CU_INIT", "100")
    found = llamakit_cuda.probe({})
    assert not found.available
    assert found.reason.startswith("unavailable: ")
    assert "no CUDA device" in found.reason and "CUDA_ERROR_NO_DEVICE" in found.reason


def test_probe_lists_driver_devices_before_a_build(host: PluginHost, fake_driver: Path,
                                                  empty_cache: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the variant is built the probe names the driver's devices, their compute
    capability and memory, and the architectures a build would target."""
    monkeypatch.setenv("FAKE_CU_COUNT", "2")
    monkeypatch.setenv("FAKE_CU_CC1", "8.9")
    found = llamakit_cuda.probe({})
    assert not found.built
    assert not found.reason.startswith("unavailable")
    assert found.architectures == "89;90"
    assert [(d.name, d.description, d.compute_capability) for d in found.devices] == [
        ("CUDA0", "Fake GPU 0", (9, 0)), ("CUDA1", "Fake GPU 1", (8, 9))]
    assert found.devices[0].memory_total == 80 * 2**30 and found.devices[0].memory_free is None
    assert found.devices[1].pci_bus_id == "0000:1c:00.0"


# --- prerequisites -----------------------------------------------------------------------

def test_missing_nvcc_is_named(toolkit_env: Path) -> None:
    problems = [str(p) for p in llamakit_cuda.cuda_backend().check_prerequisites()]
    nvcc = [p for p in problems if "nvcc" in p]
    assert len(nvcc) == 1
    assert "no nvcc (NVIDIA's CUDA compiler" in nvcc[0]
    assert "PATH" in nvcc[0] and str(toolkit_env / "no-default-cuda" / "bin") in nvcc[0]
    assert "CUDA_HOME" in nvcc[0]  # the hint says how to point at a toolkit


def test_build_stops_before_cmake_naming_nvcc(toolkit_env: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cache = toolkit_env / "cache"
    monkeypatch.setenv("LLAMAKIT_CACHE_DIR", str(cache))
    with pytest.raises(BuildError, match="cannot build the 'cuda' backend; missing: .*no nvcc"):
        build_variant(llamakit_cuda.cuda_backend())
    assert not (cache / "cmake").exists()


def test_nvcc_from_cuda_home_and_cudacxx(toolkit_env: Path, make_toolkit: Maker,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_toolkit(toolkit_env / "cuda-13")
    monkeypatch.setenv("CUDA_HOME", str(root))
    assert [str(p) for p in llamakit_cuda.cuda_backend().check_prerequisites()
            if "nvcc" in str(p) or "cuda" in str(p).lower()] == []
    monkeypatch.delenv("CUDA_HOME")
    monkeypatch.setenv("CUDACXX", str(root / "bin" / "nvcc"))
    flags = llamakit_cuda.cuda_backend().cmake_flags()
    assert flags["CMAKE_CUDA_COMPILER"] == str((root / "bin" / "nvcc").resolve())
    assert flags["CUDAToolkit_ROOT"] == str(root.resolve())


@pytest.mark.parametrize("missing,expected", [
    ({"cublas": False}, ["cuBLAS headers (cublas_v2.h)", "libcublas.so", "libcublasLt.so"]),
    ({"runtime": False}, ["CUDA runtime headers (cuda_runtime.h)", "libcudart.so"]),
    ({"stub": False}, ["no libcuda.so to link against"]),
])
def test_missing_parts_of_the_toolkit_are_named(toolkit_env: Path, make_toolkit: Maker,
                                                monkeypatch: pytest.MonkeyPatch,
                                                missing: dict[str, bool],
                                                expected: list[str]) -> None:
    root = make_toolkit(toolkit_env / "cuda", **missing)
    monkeypatch.setenv("CUDA_HOME", str(root))
    problems = [str(p) for p in llamakit_cuda.cuda_backend().check_prerequisites()
                if "compiler (c" not in str(p)]
    assert len(problems) == len(expected), problems
    for problem, text in zip(problems, expected, strict=True):
        assert text in problem
        assert str(root.resolve()) in problem  # says which toolkit it looked in


def test_nvcc_that_does_not_run_is_named(toolkit_env: Path, make_toolkit: Maker,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_toolkit(toolkit_env / "cuda-broken")
    (root / "bin" / "nvcc").write_text("#!/bin/sh\nexit 3\n")
    monkeypatch.setenv("CUDA_HOME", str(root))
    problems = [str(p) for p in llamakit_cuda.cuda_backend().check_prerequisites()]
    assert any("nvcc at" in p and "exit 3" in p for p in problems), problems


# --- build flags, link arguments, key --------------------------------------------------------

def test_link_args_use_the_toolkit_with_an_rpath(toolkit_env: Path, make_toolkit: Maker,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_toolkit(toolkit_env / "cuda").resolve()
    monkeypatch.setenv("CUDA_HOME", str(root))
    args = llamakit_cuda.cuda_backend().link_args
    assert args[:3] == (f"-L{root / 'lib64'}", f"-L{root / 'lib64' / 'stubs'}",
                        f"-Wl,-rpath,{root / 'lib64'}")
    assert not any("rpath" in a and "stubs" in a for a in args)  # the driver's own at run time
    assert args[3:] == ("-lcublas", "-lcublasLt", "-lcudart", "-lcuda", "-ldl", "-lrt")


def test_cmake_flags(toolkit_env: Path, make_toolkit: Maker, fake_driver: Path,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_toolkit(toolkit_env / "cuda").resolve()
    monkeypatch.setenv("CUDA_HOME", str(root))
    flags = llamakit_cuda.cuda_backend().cmake_flags()
    assert flags["GGML_CUDA"] == "ON"
    assert flags["CMAKE_CUDA_ARCHITECTURES"] == "90"  # the fake device's own
    assert flags["GGML_CUDA_FA_ALL_QUANTS"] == "OFF"
    assert flags["CMAKE_CUDA_COMPILER"] == str(root / "bin" / "nvcc")
    assert flags["GGML_NATIVE"] in ("ON", "OFF")  # the CPU backend's flags come along
    monkeypatch.setenv(llamakit_cuda.ARCHITECTURES_ENV, "86, 90-real")
    assert llamakit_cuda.cuda_backend().cmake_flags()["CMAKE_CUDA_ARCHITECTURES"] == \
        "86;90-real"


def test_default_architectures(fake_driver: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CU_COUNT", "3")
    monkeypatch.setenv("FAKE_CU_CC0", "8.6")
    monkeypatch.setenv("FAKE_CU_CC1", "9.0")
    assert llamakit_cuda.architectures() == "86;90"  # device 2 is 9.0 too: listed once


def test_default_architectures_without_a_device(no_driver: str) -> None:
    assert llamakit_cuda.architectures() == _arch.FALLBACK
    archs = _arch.parse_architectures(_arch.FALLBACK, key="x")
    assert "90" in _arch.FALLBACK and _arch.covers(archs, (9, 0))


def test_architectures_key_the_build(toolkit_env: Path, make_toolkit: Maker, no_driver: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The architectures and nvcc's version are part of the build key."""
    root = make_toolkit(toolkit_env / "cuda")
    monkeypatch.setenv("CUDA_HOME", str(root))
    monkeypatch.setenv(llamakit_cuda.ARCHITECTURES_ENV, "90")
    key_90, inputs = _lib_key(llamakit_cuda.cuda_backend())
    assert inputs["cmake_flags"]["CMAKE_CUDA_ARCHITECTURES"] == "90"
    assert "release 13.0" in inputs["extras"]["nvcc"]
    monkeypatch.setenv(llamakit_cuda.ARCHITECTURES_ENV, "89;90")
    assert _lib_key(llamakit_cuda.cuda_backend())[0] != key_90


# --- settings ----------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("90", "90"), (90, "90"), ([86, 90], "86;90"), ("86;90", "86;90"),
    ("80-virtual, 90-real", "80-virtual;90-real"), ("120a-real", "120a-real"),
    ("90 90", "90"), ("100f", "100f"),
])
def test_architectures_accepted(value: object, expected: str) -> None:
    assert _arch.format_architectures(_arch.parse_architectures(value, key="k")) == expected


@pytest.mark.parametrize("value,match", [
    ("native", "not accepted"), ("all-major", "not accepted"), ("sm_90", "not a CUDA"),
    ("9", "not a CUDA"), ("90-fake", "not a CUDA"), ("", "empty"), ([], "empty"),
    (True, "must be a string"), ([9.0], "not a CUDA"), ({"a": 1}, "must be a string"),
])
def test_architectures_refused(value: object, match: str) -> None:
    with pytest.raises(llamakit.ConfigError, match=match) as info:
        _arch.parse_architectures(value, key="backends.cuda.architectures")
    assert info.value.key == "backends.cuda.architectures"


def test_architectures_from_the_config(no_driver: str, monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    """``[backends.cuda] architectures`` in the config file, its environment spelling, and
    LLAMAKIT_CUDA_ARCHITECTURES over both."""
    config = tmp_path / "llamakit.toml"
    config.write_text('[backends.cuda]\narchitectures = ["86", "89"]\n')
    monkeypatch.setenv("LLAMAKIT_CONFIG", str(config))
    assert llamakit_cuda.architectures() == "86;89"
    monkeypatch.setenv("LLAMAKIT_BACKENDS__CUDA__ARCHITECTURES", "90")
    assert llamakit_cuda.architectures() == "90"
    monkeypatch.setenv(llamakit_cuda.ARCHITECTURES_ENV, "80")
    assert llamakit_cuda.architectures() == "80"


def test_unknown_setting_is_a_config_error(no_driver: str, tiny_model_path: Path) -> None:
    with pytest.raises(llamakit.ConfigError, match="unknown key.*archs") as info:
        llamakit.load_model(tiny_model_path, backend="cuda",
                            backend_settings={"cuda": {"archs": "90"}})
    assert info.value.key == "backends.cuda.archs"


def test_architectures_for_one_call_only_are_refused(no_driver: str,
                                                     tiny_model_path: Path) -> None:
    """A build cannot see a value passed to one load: refused, not silently ignored."""
    with pytest.raises(llamakit.ConfigError, match="build setting") as info:
        llamakit.load_model(tiny_model_path, backend="cuda",
                            backend_settings={"cuda": {"architectures": "75"}})
    assert info.value.key == "backends.cuda.architectures"


def test_architectures_matching_the_process_config_are_fine(
        no_driver: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMAKIT_BACKENDS__CUDA__ARCHITECTURES", "90")
    reason = llamakit_cuda.cuda_backend().check_usable({"architectures": "90"})
    assert reason is not None and reason.startswith("no NVIDIA driver")


# --- architecture coverage ---------------------------------------------------------------

@pytest.mark.parametrize("archs,capability,expected", [
    ("90", (9, 0), True), ("90", (10, 0), True),  # PTX runs on later devices
    ("90-real", (9, 0), True), ("90-real", (10, 0), False), ("90-real", (8, 9), False),
    ("86-real", (8, 9), True),  # machine code runs on later minors of its major
    ("80-virtual", (8, 6), True), ("80-virtual", (7, 5), False),
    ("90a-real", (9, 0), True), ("90a", (10, 0), False),
    ("120", (12, 0), True), ("120", (12, 1), False),  # ggml builds 12X as 12Xa
    ("100f", (10, 3), True), ("100f", (12, 0), False),
    ("75-virtual;86-real", (8, 9), True), ("75-virtual;86-real", (7, 0), False),
])
def test_coverage(archs: str, capability: tuple[int, int], expected: bool) -> None:
    assert _arch.covers(_arch.parse_architectures(archs, key="k"), capability) is expected
