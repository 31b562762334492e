"""llamakit's CUDA backend: llama.cpp's ggml-cuda (with cuBLAS) on NVIDIA GPUs, plus its CPU
backend for the layers that stay on the host.

Settings (``[backends.cuda]`` in the config, or the environment):

- ``architectures`` / ``LLAMAKIT_CUDA_ARCHITECTURES`` (the variable wins): the CUDA
  architectures to compile for, CMake's syntax (``"90"``, ``"86;90"``, ``[86, 90]``,
  ``"80-virtual;90-real"``). Default: those of the GPUs the driver shows at build time
  (``"90"`` on an H100), or ``"80-virtual;90"`` when it shows none. The list is part of the
  build key. It is a build setting, so it is read from the process's configuration
  (``$LLAMAKIT_CONFIG``, ``LLAMAKIT_BACKENDS__CUDA__ARCHITECTURES``); a different value
  passed to one call is refused rather than silently ignored.

The toolkit is found through ``$CUDACXX``, ``$CUDA_HOME``, ``$CUDA_PATH``,
``$CUDAToolkit_ROOT``, ``PATH`` or ``/usr/local/cuda`` (see ``_toolkit``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llamakit_cpu import LIBRARIES as CPU_LIBRARIES
from llamakit_cpu import cpu_backend

import llamakit
from llamakit import BackendSpec, ConfigError, DeviceInfo, Prerequisite, hookimpl

from ._arch import covers, default_architectures, format_architectures, parse_architectures
from ._driver import DriverDevice, driver_devices
from ._toolkit import find_toolkit, link_args, nvcc_version, toolkit_problems

__all__ = ["ARCHITECTURES_ENV", "PRIORITY", "CudaDevice", "CudaProbe", "architectures",
           "cuda_backend", "llamakit_register_backends", "probe"]

LIBRARIES = (*CPU_LIBRARIES[:2], "ggml/src/ggml-cuda/libggml-cuda.a", *CPU_LIBRARIES[2:])
PRIORITY = 20
"""Above Vulkan's 10 (and the CPU's 0): on NVIDIA hardware CUDA is the faster backend."""
ARCHITECTURES_ENV = "LLAMAKIT_CUDA_ARCHITECTURES"
_KEY = "backends.cuda.architectures"
_SETTINGS = {"architectures"}


def _validated(settings: Mapping[str, Any]) -> Mapping[str, Any]:
    unknown = set(settings) - _SETTINGS
    if unknown:
        raise ConfigError(f"unknown key(s) in [backends.cuda]: {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(_SETTINGS))}",
                          key=f"backends.cuda.{sorted(unknown)[0]}")
    if "architectures" in settings:
        parse_architectures(settings["architectures"], key=_KEY)
    return settings


def _process_settings() -> Mapping[str, Any]:
    """The ``[backends.cuda]`` table of this process's configuration (file + environment):
    what a build, which takes no per-call settings, can see."""
    return _validated(llamakit.load_config().backends.get("cuda", {}))


def architectures() -> str:
    """The CUDA architectures the build compiles for, in CMake's syntax."""
    from_env = os.environ.get(ARCHITECTURES_ENV, "").strip()
    if from_env:
        return format_architectures(parse_architectures(from_env, key=ARCHITECTURES_ENV))
    table = _process_settings()
    if "architectures" in table:
        return format_architectures(parse_architectures(table["architectures"], key=_KEY))
    return default_architectures(d.compute_capability for d in driver_devices().devices)


def _cmake_flags() -> dict[str, str]:
    flags = {**cpu_backend().cmake_flags(), "GGML_CUDA": "ON",
             "CMAKE_CUDA_ARCHITECTURES": architectures(),
             # One GPU per process is the common case; NCCL would be one more library to
             # find and link. The remaining ggml-cuda options are named so the key shows them.
             "GGML_CUDA_NCCL": "OFF", "GGML_CUDA_GRAPHS": "ON",
             "GGML_CUDA_FA_ALL_QUANTS": "OFF"}
    toolkit = find_toolkit()
    if toolkit.nvcc is not None and toolkit.root is not None:
        flags["CMAKE_CUDA_COMPILER"] = str(toolkit.nvcc)
        flags["CUDAToolkit_ROOT"] = str(toolkit.root)
    return flags


def _key_extras() -> dict[str, str]:
    extras = dict(cpu_backend().key_extras())
    toolkit = find_toolkit()
    if toolkit.nvcc is not None:
        extras["nvcc"] = nvcc_version(toolkit.nvcc)
    return extras


def _prerequisites() -> list[Prerequisite]:
    return [*cpu_backend().check_prerequisites(), *toolkit_problems(find_toolkit())]


def _describe(device: DriverDevice) -> str:
    major, minor = device.compute_capability
    return f"{device.ordinal}: {device.name}, compute capability {major}.{minor}"


def _uncovered() -> tuple[str | None, list[DriverDevice]]:
    """Why no device can run here (None if some can), and the visible devices the build's
    architectures do not cover."""
    found = driver_devices()
    if found.error is not None:
        return found.error, []
    archs = parse_architectures(architectures(), key=_KEY)
    missed = [d for d in found.devices if not covers(archs, d.compute_capability)]
    return None, missed


def _check_usable(settings: Mapping[str, Any]) -> str | None:
    table = _validated(settings)
    if "architectures" in table:
        wanted = format_architectures(parse_architectures(table["architectures"], key=_KEY))
        process = _process_settings().get("architectures")
        if process is None or format_architectures(parse_architectures(process, key=_KEY)) \
                != wanted:
            raise ConfigError(
                f"{_KEY} = {wanted!r} reached this call only, but it is a build setting: "
                f"builds read it from the config file ($LLAMAKIT_CONFIG) or the environment "
                f"({ARCHITECTURES_ENV} or LLAMAKIT_BACKENDS__CUDA__ARCHITECTURES), which "
                f"give {architectures()!r}; set it there", key=_KEY)
    error, missed = _uncovered()
    if error is not None:
        return error
    if missed:
        # ggml-cuda aborts the process on a kernel launch for a device it has no code for,
        # and it uses every visible device: one uncovered device is one too many.
        major, minor = missed[0].compute_capability
        return (f"the build's CUDA architectures ({architectures()}) have no code for "
                + "; ".join(_describe(d) for d in missed)
                + f"; add {major}{minor} to [backends.cuda] architectures (or "
                  f"{ARCHITECTURES_ENV}), or hide the device with CUDA_VISIBLE_DEVICES")
    return None


def _score(devices: Sequence[DeviceInfo]) -> float:
    cuda = [d for d in devices if d.registry == "CUDA"]
    error, missed = _uncovered()
    if error is not None or missed:
        return 0.0
    return float(len(cuda))


def cuda_backend() -> BackendSpec:
    """The CUDA backend's spec (priority above Vulkan's and the CPU's)."""
    return BackendSpec(
        name="cuda",
        priority=PRIORITY,
        description="llama.cpp on NVIDIA GPUs (ggml-cuda, cuBLAS), CPU for the rest",
        libraries=LIBRARIES,
        cmake_flags=_cmake_flags,
        link_args=link_args(find_toolkit()),
        check_prerequisites=_prerequisites,
        key_extras=_key_extras,
        score=_score,
        check_usable=_check_usable,
    )


@hookimpl
def llamakit_register_backends() -> list[BackendSpec]:
    return [cuda_backend()]


@dataclass(frozen=True)
class CudaDevice:
    """One CUDA device: ggml's view (name, memory) joined with the driver's (compute
    capability, PCI bus). ``name`` and ``memory_free`` come from ggml's device API once the
    variant is built; before that ``name`` is ``CUDA<index>`` and ``memory_free`` None."""

    index: int
    name: str
    description: str
    memory_total: int
    memory_free: int | None
    compute_capability: tuple[int, int]
    pci_bus_id: str


@dataclass(frozen=True)
class CudaProbe:
    """What the CUDA backend sees on this machine."""

    available: bool
    reason: str
    """``"ready"``, ``"unavailable: <why>"``, ``"not built yet; builds on first use"`` or
    ``"cannot be built: missing ..."`` (the ``llamakit backends`` wording)."""
    architectures: str
    devices: tuple[CudaDevice, ...]
    built: bool = False

    def __str__(self) -> str:
        lines = [f"cuda: {self.reason} (architectures {self.architectures})"]
        for d in self.devices:
            free = "" if d.memory_free is None else f"{d.memory_free / 2**30:.1f} GiB free of "
            lines.append(f"  [{d.index}] {d.name}: {d.description}, compute capability "
                         f"{d.compute_capability[0]}.{d.compute_capability[1]}, {free}"
                         f"{d.memory_total / 2**30:.1f} GiB, PCI {d.pci_bus_id}")
        return "\n".join(lines)


def probe(settings: Mapping[str, Mapping[str, Any]] | None = None) -> CudaProbe:
    """The CUDA devices and whether the backend can use them, without building anything.

    Goes through ``llamakit.backends(settings)`` (so, like ``llamakit backends``, it lists
    every installed backend, loading those already built): when the CUDA variant is built
    and usable, names and memory come from ggml's device API. Works without a driver or a
    device: ``available`` is then False and ``reason`` says ``"unavailable: ..."`` why.
    """
    archs = architectures()
    status = next((s for s in llamakit.backends(settings) if s.name == "cuda"), None)
    driver = driver_devices().devices
    if status is None:
        return CudaProbe(False, "unavailable: the llamakit-cuda plugin is not loaded "
                                "(see LLAMAKIT_DISABLE_PLUGINS)", archs, ())
    ggml = [d for d in status.devices if d.registry == "CUDA"]
    if ggml and len(ggml) == len(driver):
        devices = tuple(CudaDevice(index=i, name=g.name, description=g.description,
                                   memory_total=g.memory_total, memory_free=g.memory_free,
                                   compute_capability=d.compute_capability,
                                   pci_bus_id=d.pci_bus_id)
                        for i, (g, d) in enumerate(zip(ggml, driver, strict=True)))
    else:
        devices = tuple(CudaDevice(index=d.ordinal, name=f"CUDA{d.ordinal}",
                                   description=d.name, memory_total=d.memory_total,
                                   memory_free=None, compute_capability=d.compute_capability,
                                   pci_bus_id=d.pci_bus_id) for d in driver)
    return CudaProbe(status.available, status.reason, archs, devices, status.built)
