"""What a backend plugin registers: a ``BackendSpec`` and the records its probe returns."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["BackendSpec", "DeviceInfo", "ModelDevices", "Prerequisite"]

DeviceType = Literal["cpu", "gpu", "igpu", "accel", "other"]


@dataclass(frozen=True)
class Prerequisite:
    """A system requirement that is missing, with the command that installs it."""

    problem: str
    hint: str

    def __str__(self) -> str:
        return f"{self.problem} (install: {self.hint})"


@dataclass(frozen=True)
class DeviceInfo:
    """One compute device as ggml's device API reports it."""

    index: int
    name: str
    description: str
    type: DeviceType
    memory_free: int
    memory_total: int
    registry: str = ""
    """The ggml backend that provides the device (``CPU``, ``Vulkan``, ``CUDA``, ...)."""

    @property
    def is_accelerator(self) -> bool:
        """Whether layers can be offloaded to it (anything but the CPU backend's device)."""
        return self.registry != "CPU" and self.type != "cpu"


def _no_prerequisites() -> list[Prerequisite]:
    return []


def _no_flags() -> dict[str, str]:
    return {}


def _no_preparation() -> None:
    return None


def _nothing(settings: Mapping[str, Any]) -> None:
    del settings


def _usable(settings: Mapping[str, Any]) -> str | None:
    del settings
    return None


def _cpu_score(devices: Sequence[DeviceInfo]) -> float:
    return 1.0 if devices else 0.0


def _no_check() -> None:
    return None


@dataclass(frozen=True)
class ModelDevices:
    """The devices a backend supplies for one model load (``BackendSpec.model_devices``).

    ``devices`` are the variant's ``ggml_backend_dev_t`` pointers (cffi), in the order
    llama.cpp should use them; they go into ``llama_model_params.devices``.
    ``accelerators`` describe them (offload checks and ``Model.offload``). ``check`` is
    called after every C call that may have reached the devices (the load, context
    creation, each decode, state reads and writes) and raises the backend's own error
    when a device was lost meanwhile; it must be cheap. ``close`` runs once the model is
    freed (or its load failed).
    """

    devices: Sequence[Any]
    accelerators: Sequence[DeviceInfo]
    check: Callable[[], None] = _no_check
    close: Callable[[], None] = _no_check


@dataclass(frozen=True)
class BackendSpec:
    """A compute backend: how to build its llama.cpp variant and how good it is here.

    ``cmake_flags`` and ``key_extras`` are called when a build key is computed, so they
    must be cheap; whatever they return is part of the key. ``check_prerequisites`` runs
    before CMake and returns what is missing (empty when all is there). ``score`` turns
    the probed devices into a number: 0 means "cannot run usefully here"; ``auto`` picks
    the highest ``(priority, score)`` among backends with a positive score.
    """

    name: str
    priority: int
    description: str
    libraries: Sequence[str]
    """Static libraries, relative to the CMake build folder, in link order."""
    cmake_flags: Callable[[], Mapping[str, str]] = _no_flags
    link_args: Sequence[str] = ()
    """Linker arguments after the static group, for system libraries (``-lvulkan``)."""
    cmake_targets: Sequence[str] = ("llama",)
    check_prerequisites: Callable[[], Sequence[Prerequisite]] = _no_prerequisites
    key_extras: Callable[[], Mapping[str, str]] = _no_flags
    score: Callable[[Sequence[DeviceInfo]], float] = _cpu_score
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment variables set for CMake and the compiler."""
    prepare: Callable[[], None] = _no_preparation
    """Runs before CMake configures a new build (after the prerequisite check), e.g. to
    fetch headers. What it fetches must already be named by ``cmake_flags`` or
    ``key_extras``, so that the cache key stays truthful."""
    before_load: Callable[[Mapping[str, Any]], None] = _nothing
    """Runs before the variant's module is first imported, with the backend's settings
    (the ``[backends.<name>]`` config table); the place to set environment variables the
    native library reads at initialisation."""
    native_areas: Sequence[str] = ()
    """Optional declaration areas of ``native/areas/`` (``<area>.cdef``, plus ``<area>.h``
    when present) compiled into this variant's module only, for C APIs that only this
    variant links (ggml-rpc's, say). They key this variant's module, no other's."""
    settings_model: type[BaseModel] | None = None
    """A pydantic model of the backend's settings: the ``[backends.<name>]`` table,
    overridden by the extra keyword arguments of ``load_model``. None: the backend takes
    no load options (its table still reaches ``before_load``)."""
    model_devices: Callable[[Any, Any], ModelDevices] | None = None
    """Called by ``load_model`` as ``model_devices(native, settings)`` (the loaded
    ``NativeLib`` and the validated ``settings_model`` instance) to supply the devices the
    model loads onto, instead of the variant's own (e.g. remote ones)."""
    check_usable: Callable[[Mapping[str, Any]], str | None] = _usable
    """A cheap test, made before anything is built or loaded, of whether this machine can
    run the backend at all (a driver, a device it supports), with the backend's settings:
    None when it may, else the reason. ``auto`` skips the backend with that reason instead
    of building it, a request by name raises ``BackendUnavailableError`` with it, and
    ``backends()`` lists it as unavailable; ``llamakit build`` still builds (a build machine
    need not have the device). May raise ``ConfigError`` for bad settings."""
    describe_build: Callable[[Path], Mapping[str, str]] | None = None
    """Called with the CMake build folder once a variant is built; the facts it returns
    (short names to text, e.g. the shader features a Vulkan variant has) are kept with the
    variant and shown by ``llamakit backends``. Must not change what is built."""
    auto: bool = True
    """Whether ``auto`` may choose the backend. False for one that is only useful with
    settings of its own (the rpc backend needs its workers' addresses)."""
    plugin: str = ""
    """Set by the plugin manager: the distribution that registered the spec."""

    @property
    def module_name(self) -> str:
        return f"_llamakit_native_{self.name}"
