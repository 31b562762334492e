"""llamakit's Vulkan backend: llama.cpp's ggml-vulkan, plus its CPU backend for the layers
that stay on the host.

Settings (``[backends.vulkan]`` in the config, or the environment):

- ``allow_cpu_device`` / ``LLAMAKIT_VULKAN_ALLOW_CPU_DEVICE=1``: admit CPU-type Vulkan
  devices such as Mesa's lavapipe (ggml-vulkan hides them otherwise). Tests and CI use it.
- ``glslc`` / ``LLAMAKIT_VULKAN_GLSLC``: the shader compiler the variant is built with
  (``system``, ``modern`` or a path; see ``llamakit vulkan-glslc``).

Both are declared in :class:`._settings.VulkanSettings`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llamakit_cpu import LIBRARIES as CPU_LIBRARIES
from llamakit_cpu import cpu_backend

from llamakit import BackendSpec, CommandSpec, DeviceInfo, Prerequisite, hookimpl

from ._features import describe_build
from ._glslc import (
    glslc_cmake_flags,
    glslc_command,
    glslc_key_extras,
    glslc_prerequisites,
    prepare_glslc,
)
from ._headers import header_problems, headers_include_dir, prepare_headers
from ._loader import physical_devices
from ._settings import vulkan_settings

__all__ = ["llamakit_register_backends", "llamakit_register_commands", "vulkan_backend"]

logger = logging.getLogger("llamakit.backends")

LIBRARIES = (*CPU_LIBRARIES[:2], "ggml/src/ggml-vulkan/libggml-vulkan.a", *CPU_LIBRARIES[2:])
_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
             "/usr/local/lib")


def _cmake_flags() -> dict[str, str]:
    flags = {**cpu_backend().cmake_flags(), "GGML_VULKAN": "ON"}
    include = headers_include_dir()
    if include is not None:
        flags["Vulkan_INCLUDE_DIR"] = str(include)
    return {**flags, **glslc_cmake_flags()}


def _sdk_lib_dir() -> Path | None:
    sdk = os.environ.get("VULKAN_SDK")
    if sdk and Path(sdk, "lib", "libvulkan.so").exists():
        return Path(sdk, "lib")
    return None


def _loader_library() -> bool:
    return _sdk_lib_dir() is not None or any(Path(d, "libvulkan.so").exists()
                                             for d in _LIB_DIRS)


def _link_args() -> tuple[str, ...]:
    # CMake finds a VULKAN_SDK's loader by itself, but the module is linked outside CMake:
    # the SDK's lib/ need not be on the linker's path (an SDK unpacked anywhere, or a
    # machine whose only libvulkan.so is the SDK's link to the runtime libvulkan.so.1).
    lib = _sdk_lib_dir()
    return (f"-L{lib}", "-lvulkan") if lib is not None else ("-lvulkan",)


def _spirv_headers() -> bool:
    sdk = os.environ.get("VULKAN_SDK")
    roots = [*(sdk,) * bool(sdk), "/usr", "/usr/local"]
    return any(Path(root, base, "SPIRV-Headers", "SPIRV-HeadersConfig.cmake").exists()
               for root in roots if root
               for base in ("share/cmake", "lib/cmake", "lib/x86_64-linux-gnu/cmake",
                            "lib/aarch64-linux-gnu/cmake"))


def _prerequisites() -> list[Prerequisite]:
    missing = list(cpu_backend().check_prerequisites())
    missing += glslc_prerequisites()
    if not _spirv_headers():
        missing.append(Prerequisite("no SPIR-V headers (CMake package SPIRV-Headers)",
                                    "apt-get install spirv-headers"))
    if not _loader_library():
        missing.append(Prerequisite("no Vulkan loader to link against (libvulkan.so)",
                                    "apt-get install libvulkan-dev"))
    return missing + header_problems()


def allow_cpu_device(settings: Mapping[str, Any]) -> bool:
    return vulkan_settings(settings).allow_cpu_device


def _key_extras() -> dict[str, str]:
    return {**cpu_backend().key_extras(), **glslc_key_extras()}


def _prepare() -> None:
    prepare_headers()
    prepare_glslc()


def _before_load(settings: Mapping[str, Any]) -> None:
    if not allow_cpu_device(settings) or "GGML_VK_VISIBLE_DEVICES" in os.environ:
        return
    found = physical_devices()
    if found:
        # Every index the loader reports, so ggml-vulkan keeps CPU-type devices too; an
        # index it does not know would make it throw during initialisation.
        os.environ["GGML_VK_VISIBLE_DEVICES"] = ",".join(str(d.index) for d in found)
        logger.info("vulkan: admitting CPU-type devices; visible: %s",
                    ", ".join(f"{d.index}={d.name} ({d.type})" for d in found))


def _check_usable(settings: Mapping[str, Any]) -> str | None:
    """Why this machine cannot use the backend, asked before the variant is built (minutes
    on a small machine): no Vulkan loader or no device, or only CPU-type devices (Mesa's
    lavapipe) while they are not admitted. ggml-vulkan itself skips CPU-type devices."""
    found = physical_devices()
    if not found:
        return ("no Vulkan device: the Vulkan loader (libvulkan.so.1) is missing or reports "
                "no physical device; install a driver (mesa-vulkan-drivers, the NVIDIA "
                "driver) and check with `vulkaninfo --summary`")
    if allow_cpu_device(settings) or any(d.type != "cpu" for d in found):
        return None
    names = ", ".join(f"{d.name} ({d.type})" for d in found)
    return (f"only CPU-type Vulkan devices ({names}), which the cpu backend beats; set "
            "[backends.vulkan] allow_cpu_device = true or LLAMAKIT_VULKAN_ALLOW_CPU_DEVICE=1 "
            "to use them anyway")


def _score(devices: Sequence[DeviceInfo]) -> float:
    return float(sum(1 for d in devices if d.registry == "Vulkan"))


def vulkan_backend() -> BackendSpec:
    """The Vulkan backend's spec (priority above the CPU's)."""
    return BackendSpec(
        name="vulkan",
        priority=10,
        description="llama.cpp on Vulkan GPUs (ggml-vulkan), CPU for the rest",
        libraries=LIBRARIES,
        cmake_flags=_cmake_flags,
        link_args=_link_args(),
        check_prerequisites=_prerequisites,
        key_extras=_key_extras,
        score=_score,
        prepare=_prepare,
        before_load=_before_load,
        check_usable=_check_usable,
        describe_build=describe_build,
    )


@hookimpl
def llamakit_register_backends() -> list[BackendSpec]:
    return [vulkan_backend()]


@hookimpl
def llamakit_register_commands() -> list[CommandSpec]:
    return [glslc_command()]
