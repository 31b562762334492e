"""Fixtures for the CUDA plugin's tests: a fake NVIDIA driver and a fake CUDA toolkit.

The fake driver is a small C library with the seven driver-API functions the plugin calls;
its answers come from environment variables read on every call (``FAKE_CU_INIT``: cuInit's
result, ``FAKE_CU_COUNT``: the device count, ``FAKE_CU_CC<n>``: device n's compute
capability such as ``9.0``), so one build serves every test.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

llamakit_cuda = pytest.importorskip("llamakit_cuda")
from llamakit_cuda import _driver, _toolkit  # noqa: E402

_FAKE_DRIVER = r"""
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int env_int(const char *name, int fallback) {
    const char *value = getenv(name);
    return value ? atoi(value) : fallback;
}
int cuInit(unsigned flags) { (void)flags; return env_int("FAKE_CU_INIT", 0); }
int cuDriverGetVersion(int *version) { *version = 13000; return 0; }
int cuDeviceGetCount(int *count) { *count = env_int("FAKE_CU_COUNT", 1); return 0; }
int cuDeviceGet(int *device, int ordinal) { *device = ordinal; return 0; }
int cuDeviceGetName(char *name, int length, int device) {
    snprintf(name, (size_t)length, "Fake GPU %d", device);
    return 0;
}
int cuDeviceTotalMem_v2(size_t *bytes, int device) {
    (void)device;
    *bytes = (size_t)80 << 30;
    return 0;
}
int cuDeviceGetAttribute(int *value, int attribute, int device) {
    char name[32];
    snprintf(name, sizeof name, "FAKE_CU_CC%d", device);
    const char *cc = getenv(name);
    if (!cc) cc = "9.0";
    const char *dot = strchr(cc, '.');
    if (attribute == 75) *value = atoi(cc);
    else if (attribute == 76) *value = dot ? atoi(dot + 1) : 0;
    else if (attribute == 33) *value = 0x1b + device;
    else *value = 0;
    return 0;
}
int cuGetErrorName(int code, const char **text) {
    *text = code == 100 ? "CUDA_ERROR_NO_DEVICE" : "CUDA_ERROR_FAKE";
    return 0;
}
"""


@pytest.fixture(scope="session")
def fake_driver_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake libcuda, compiled once per session."""
    compiler = shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler for the fake NVIDIA driver")
    folder = tmp_path_factory.mktemp("fake-cuda-driver")
    source = folder / "fake_cuda.c"
    source.write_text(_FAKE_DRIVER)
    library = folder / "libcuda-fake.so.1"
    subprocess.run([compiler, "-shared", "-fPIC", "-O0", "-o", str(library), str(source)],
                   check=True, capture_output=True)
    return library


@pytest.fixture
def fake_driver(fake_driver_library: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The plugin talks to the fake driver (one device, compute capability 9.0, unless the
    test sets FAKE_CU_* variables) and reads no architectures from the environment."""
    monkeypatch.setattr(_driver, "DRIVER_LIBRARIES", (str(fake_driver_library),))
    for name in ("FAKE_CU_INIT", "FAKE_CU_COUNT", "FAKE_CU_CC0", "FAKE_CU_CC1",
                 llamakit_cuda.ARCHITECTURES_ENV, "LLAMAKIT_BACKENDS__CUDA__ARCHITECTURES"):
        monkeypatch.delenv(name, raising=False)
    _driver._probe.cache_clear()
    yield fake_driver_library
    _driver._probe.cache_clear()


@pytest.fixture
def no_driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The plugin looks for a driver library that does not exist (a machine without one)."""
    name = "libcuda-llamakit-test-missing.so.1"
    monkeypatch.setattr(_driver, "DRIVER_LIBRARIES", (name,))
    monkeypatch.delenv(llamakit_cuda.ARCHITECTURES_ENV, raising=False)
    monkeypatch.delenv("LLAMAKIT_BACKENDS__CUDA__ARCHITECTURES", raising=False)
    _driver._probe.cache_clear()
    yield name
    _driver._probe.cache_clear()


def _make_toolkit(root: Path, *, cublas: bool = True, runtime: bool = True,
                  stub: bool = True) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "nvvm").mkdir()
    nvcc = root / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0, V13.0.88'\n"
                    "echo 'Build cuda_13.0.r13.0/compiler.fake'\n")
    nvcc.chmod(0o755)
    (root / "include").mkdir()
    (root / "lib64" / "stubs").mkdir(parents=True)
    if runtime:
        (root / "include" / "cuda_runtime.h").write_text("")
        (root / "lib64" / "libcudart.so").write_text("")
    if cublas:
        (root / "include" / "cublas_v2.h").write_text("")
        (root / "lib64" / "libcublas.so").write_text("")
        (root / "lib64" / "libcublasLt.so").write_text("")
    if stub:
        (root / "lib64" / "stubs" / "libcuda.so").write_text("")
    return root


@pytest.fixture
def make_toolkit() -> Callable[..., Path]:
    """``make_toolkit(root, cublas=True, runtime=True, stub=True)`` writes a fake CUDA
    toolkit folder: an nvcc that prints a version, and empty stand-ins for the headers and
    libraries the prerequisite check looks for."""
    return _make_toolkit


@pytest.fixture
def toolkit_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No real toolkit is visible: PATH holds only an empty folder, the CUDA variables are
    unset and the default root points nowhere. Returns a folder for fake toolkits."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for name in ("CUDACXX", "CUDA_HOME", "CUDA_PATH", "CUDAToolkit_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_toolkit, "_DEFAULT_ROOT", tmp_path / "no-default-cuda")
    monkeypatch.setattr(_toolkit, "_system_lib_dirs", lambda: [])
    return tmp_path
