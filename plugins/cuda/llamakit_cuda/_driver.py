"""NVIDIA's driver API through ctypes: which CUDA devices this machine has, without ggml.

The variant's module links ``libcuda.so.1``, so on a machine without the driver it cannot
even be imported; and ggml-cuda aborts the process when it meets a device its kernels were
not compiled for. Both are known before anything is built from six driver calls
(``cuInit``, ``cuDeviceGetCount``, ``cuDeviceGet``, ``cuDeviceGetName``,
``cuDeviceTotalMem_v2``, ``cuDeviceGetAttribute``).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["DRIVER_LIBRARIES", "DriverDevice", "DriverProbe", "driver_devices"]

DRIVER_LIBRARIES = ("libcuda.so.1", "libcuda.so")
_ATTR_PCI_BUS = 33
_ATTR_PCI_DEVICE = 34
_ATTR_PCI_DOMAIN = 50
_ATTR_CC_MAJOR = 75
_ATTR_CC_MINOR = 76
_NO_DEVICE = 100
_NAMES = {35: "CUDA_ERROR_INSUFFICIENT_DRIVER (the driver is older than this CUDA runtime)",
          100: "CUDA_ERROR_NO_DEVICE", 999: "CUDA_ERROR_UNKNOWN"}


@dataclass(frozen=True)
class DriverDevice:
    """One CUDA device as the driver reports it (ordinal = the CUDA runtime's index)."""

    ordinal: int
    name: str
    memory_total: int
    compute_capability: tuple[int, int]
    pci_bus_id: str


@dataclass(frozen=True)
class DriverProbe:
    """The driver's answer: its devices, or why there are none (``error``)."""

    devices: tuple[DriverDevice, ...]
    error: str | None
    driver_version: int | None = None
    """``cuDriverGetVersion``: 13000 for CUDA 13.0."""


def _error_name(cuda: ctypes.CDLL, code: int) -> str:
    text = ctypes.c_char_p()
    try:
        if cuda.cuGetErrorName(code, ctypes.byref(text)) == 0 and text.value:
            return f"{text.value.decode()} ({code})"
    except AttributeError:
        pass
    return f"{_NAMES.get(code, 'CUDA error')} ({code})"


def _load(names: tuple[str, ...]) -> tuple[ctypes.CDLL | None, str]:
    problems = []
    for name in names:
        try:
            return ctypes.CDLL(name), name
        except OSError as exc:
            problems.append(str(exc))
    return None, "; ".join(problems)


def driver_devices() -> DriverProbe:
    """Every CUDA device the driver reports, or why none (cached per process: devices do
    not come and go, and ``cuInit`` reads ``CUDA_VISIBLE_DEVICES`` only once)."""
    return _probe(DRIVER_LIBRARIES)


@lru_cache(maxsize=8)
def _probe(libraries: tuple[str, ...]) -> DriverProbe:
    cuda, loaded = _load(libraries)
    if cuda is None:
        return DriverProbe((), f"no NVIDIA driver: {libraries[0]} cannot be loaded ({loaded})")
    code = cuda.cuInit(0)
    if code == _NO_DEVICE:
        return DriverProbe((), f"the NVIDIA driver ({loaded}) reports no CUDA device "
                               f"(cuInit: {_error_name(cuda, code)})")
    if code != 0:
        return DriverProbe((), f"the NVIDIA driver ({loaded}) does not start: cuInit failed "
                               f"with {_error_name(cuda, code)}")
    version = ctypes.c_int()
    driver_version = version.value if cuda.cuDriverGetVersion(ctypes.byref(version)) == 0 \
        else None
    count = ctypes.c_int()
    code = cuda.cuDeviceGetCount(ctypes.byref(count))
    if code != 0:
        return DriverProbe((), f"cuDeviceGetCount failed with {_error_name(cuda, code)}",
                           driver_version)
    found = []
    for ordinal in range(count.value):
        device = ctypes.c_int()
        name = ctypes.create_string_buffer(256)
        memory = ctypes.c_size_t()
        attrs = {}
        calls = [cuda.cuDeviceGet(ctypes.byref(device), ordinal)]
        calls.append(cuda.cuDeviceGetName(name, len(name), device))
        calls.append(cuda.cuDeviceTotalMem_v2(ctypes.byref(memory), device))
        for attr in (_ATTR_CC_MAJOR, _ATTR_CC_MINOR, _ATTR_PCI_DOMAIN, _ATTR_PCI_BUS,
                     _ATTR_PCI_DEVICE):
            value = ctypes.c_int()
            calls.append(cuda.cuDeviceGetAttribute(ctypes.byref(value), attr, device))
            attrs[attr] = value.value
        failed = [code for code in calls if code != 0]
        if failed:
            return DriverProbe((), f"querying CUDA device {ordinal} failed with "
                                   f"{_error_name(cuda, failed[0])}", driver_version)
        found.append(DriverDevice(
            ordinal=ordinal, name=name.value.decode(errors="replace"),
            memory_total=memory.value,
            compute_capability=(attrs[_ATTR_CC_MAJOR], attrs[_ATTR_CC_MINOR]),
            pci_bus_id=f"{attrs[_ATTR_PCI_DOMAIN]:04x}:{attrs[_ATTR_PCI_BUS]:02x}:"
                       f"{attrs[_ATTR_PCI_DEVICE]:02x}.0"))
    if not found:
        return DriverProbe((), f"the NVIDIA driver ({loaded}) reports no CUDA device",
                           driver_version)
    return DriverProbe(tuple(found), None, driver_version)
