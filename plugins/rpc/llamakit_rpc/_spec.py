"""The rpc backend's spec: llama.cpp's CPU backend plus ggml-rpc, in one variant."""

from __future__ import annotations

from collections.abc import Sequence

from llamakit_cpu import LIBRARIES as CPU_LIBRARIES
from llamakit_cpu import cpu_backend

from llamakit import BackendSpec, DeviceInfo

__all__ = ["LIBRARIES", "rpc_backend"]

LIBRARIES = (*CPU_LIBRARIES[:2], "ggml/src/ggml-rpc/libggml-rpc.a", *CPU_LIBRARIES[2:])


def _cmake_flags() -> dict[str, str]:
    # RDMA stays off: CMake would turn it on wherever libibverbs happens to be installed,
    # and the variant would then link a library the module is not linked against.
    return {**cpu_backend().cmake_flags(), "GGML_RPC": "ON", "GGML_RPC_RDMA": "OFF"}


def _score(devices: Sequence[DeviceInfo]) -> float:
    # The variant runs wherever the CPU backend does; what it offloads to is given per load
    # (rpc_servers), so `auto` never picks it (auto=False).
    return 1.0 if any(d.type == "cpu" for d in devices) else 0.0


def rpc_backend() -> BackendSpec:
    """The rpc backend's spec (used only when asked for by name)."""
    from ._client import model_devices
    from ._settings import RpcSettings

    cpu = cpu_backend()
    return BackendSpec(
        name="rpc",
        priority=-10,
        description="llama.cpp's RPC backend: layers on remote rpc-server workers, the rest "
                    "on this CPU",
        libraries=LIBRARIES,
        cmake_flags=_cmake_flags,
        check_prerequisites=cpu.check_prerequisites,
        key_extras=cpu.key_extras,
        score=_score,
        auto=False,
        native_areas=("rpc",),
        settings_model=RpcSettings,
        model_devices=model_devices,
    )
