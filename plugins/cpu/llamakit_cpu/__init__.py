"""llamakit's CPU backend: llama.cpp's ggml-cpu, tuned to the host unless told otherwise.

``LLAMAKIT_CPU_NATIVE=0`` builds a portable variant (``GGML_NATIVE=OFF``) instead of one
tuned to this machine's instruction set; the choice is part of the build key. Native x86
builds leave out AMX (it crashes on quantized models in this llama.cpp);
``LLAMAKIT_CPU_AMX=1`` puts it back.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
from collections.abc import Sequence

from llamakit import BackendSpec, DeviceInfo, Prerequisite, hookimpl

__all__ = ["cpu_backend", "llamakit_register_backends"]

LIBRARIES = ("src/libllama.a", "ggml/src/libggml.a", "ggml/src/libggml-cpu.a",
             "ggml/src/libggml-base.a")


def _native() -> bool:
    return os.environ.get("LLAMAKIT_CPU_NATIVE", "1").lower() not in ("0", "false", "off", "no")


# ggml's AMX matmul segfaults on quantized models with this llama.cpp (upstream
# ggml-org/llama.cpp#20824); -march=native turns it on wherever the CPU has AMX, so native
# builds switch it off unless LLAMAKIT_CPU_AMX=1. Drop this when the pin moves past a fix.
_NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


def _cmake_flags() -> dict[str, str]:
    if not _native():
        return {"GGML_NATIVE": "OFF"}
    flags = {"GGML_NATIVE": "ON"}
    amx = os.environ.get("LLAMAKIT_CPU_AMX", "0").lower() in ("1", "true", "on", "yes")
    if platform.machine().lower() in ("x86_64", "amd64") and not amx:
        flags["CMAKE_C_FLAGS"] = _NO_AMX
        flags["CMAKE_CXX_FLAGS"] = _NO_AMX
    return flags


def _key_extras() -> dict[str, str]:
    if not _native():
        return {}
    # GGML_NATIVE=ON compiles for this CPU: its identity belongs in the key.
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            lines = [line for line in handle
                     if line.startswith(("model name", "flags", "Features", "CPU part"))]
    except OSError:
        lines = []
    unique = sorted(set(lines))
    return {"host_cpu": hashlib.sha256("".join(unique).encode()).hexdigest()}


def _prerequisites() -> list[Prerequisite]:
    missing = []
    if shutil.which(os.environ.get("CC", "cc")) is None:
        missing.append(Prerequisite("no C compiler (cc)", "apt-get install build-essential"))
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        missing.append(Prerequisite("no C++ compiler (c++)", "apt-get install build-essential"))
    return missing


def _score(devices: Sequence[DeviceInfo]) -> float:
    return 1.0 if any(d.type == "cpu" for d in devices) else 0.0


def cpu_backend() -> BackendSpec:
    """The CPU backend's spec."""
    return BackendSpec(
        name="cpu",
        priority=0,
        description="llama.cpp on the CPU (ggml-cpu)",
        libraries=LIBRARIES,
        cmake_flags=_cmake_flags,
        key_extras=_key_extras,
        check_prerequisites=_prerequisites,
        score=_score,
    )


@hookimpl
def llamakit_register_backends() -> list[BackendSpec]:
    return [cpu_backend()]
