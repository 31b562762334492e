#!/usr/bin/env python3
"""What the device scripts need to know about an NVIDIA GPU, read from the driver itself.

    python3 benchmarks/gpu/device_info.py [--device N] [--shell]

Prints the GPU's name, its compute capability (the CMake CUDA architecture, ``90`` for
sm_90), and its peak memory bandwidth in TB/s: memory clock x 2 (double data rate) x bus
width, as the driver reports them through ``cuDeviceGetAttribute`` (the device tool's H200
gave 4.81 on 2026-12-02; its datasheet says 4.8). With ``--shell``: ``NAME=...``,
``CUDA_ARCHS=...`` and ``BANDWIDTH_TBS=...`` lines for ``eval`` (the scripts keep values
that are already set, so flags and the environment win over what the device says).

Only the driver's ``libcuda.so.1`` is used (ctypes): no toolkit, no Python package, since
the scripts call it before they install anything (``plugins/cuda``'s ``_driver.py`` reads
the same attributes for the plugin).
Exits with status 1, and says why on stderr, when there is no usable NVIDIA driver.
"""

from __future__ import annotations

import argparse
import ctypes
import sys

# cuda.h's CUdevice_attribute values (stable since CUDA 4 / 2.0).
_MEMORY_CLOCK_RATE_KHZ = 36
_GLOBAL_MEMORY_BUS_WIDTH_BITS = 37
_COMPUTE_CAPABILITY_MAJOR = 75
_COMPUTE_CAPABILITY_MINOR = 76


class NoDriverError(RuntimeError):
    pass


def _check(lib: ctypes.CDLL, code: int, what: str) -> None:
    if code != 0:
        text = ctypes.c_char_p()
        lib.cuGetErrorString(code, ctypes.byref(text))
        raise NoDriverError(f"{what} failed: {text.value.decode() if text.value else code}")


def device_info(index: int = 0) -> dict[str, object]:
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as error:
        raise NoDriverError(f"no NVIDIA driver library (libcuda.so.1): {error}") from error
    _check(lib, lib.cuInit(0), "cuInit")
    count = ctypes.c_int()
    _check(lib, lib.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
    if not 0 <= index < count.value:
        raise NoDriverError(f"device {index} requested, the driver sees {count.value}")
    device = ctypes.c_int()
    _check(lib, lib.cuDeviceGet(ctypes.byref(device), index), "cuDeviceGet")

    def attribute(code: int) -> int:
        value = ctypes.c_int()
        _check(lib, lib.cuDeviceGetAttribute(ctypes.byref(value), code, device),
               f"cuDeviceGetAttribute({code})")
        return value.value

    name = ctypes.create_string_buffer(256)
    _check(lib, lib.cuDeviceGetName(name, 256, device), "cuDeviceGetName")
    clock_khz = attribute(_MEMORY_CLOCK_RATE_KHZ)
    bus_bits = attribute(_GLOBAL_MEMORY_BUS_WIDTH_BITS)
    major, minor = attribute(_COMPUTE_CAPABILITY_MAJOR), attribute(_COMPUTE_CAPABILITY_MINOR)
    return {"name": name.value.decode(), "count": count.value, "arch": f"{major}{minor}",
            "memory_clock_mhz": clock_khz / 1000, "bus_width_bits": bus_bits,
            "bandwidth_tbs": round(clock_khz * 1e3 * 2 * bus_bits / 8 / 1e12, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--shell", action="store_true")
    args = parser.parse_args()
    try:
        info = device_info(args.device)
    except NoDriverError as error:
        print(f"device_info: {error}", file=sys.stderr)
        return 1
    if args.shell:
        print(f"NAME='{info['name']}'\nCUDA_ARCHS={info['arch']}\n"
              f"BANDWIDTH_TBS={info['bandwidth_tbs']}\nGPU_COUNT={info['count']}")
    else:
        for key, value in info.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
