"""The context knobs of llama.cpp (flash attention, KV-cache types, RoPE and YaRN, offload)
and the default thread count: validated against the config schema and the model before a
context is created, because llama.cpp answers some bad combinations with an abort.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from ._config.fields import check_fields, field_default
from ._config.schema import ContextConfig
from ._errors import ConfigError

if TYPE_CHECKING:
    from ._model import Model

__all__ = ["KNOBS", "QUANTIZED_KV_TYPES", "ContextKnobs", "check_knobs", "choose_threads",
           "default_threads"]

#: The ``[context]`` keys that map one to one onto ``llama_context_params`` fields.
KNOBS = ("flash_attn", "type_k", "type_v", "rope_freq_base", "rope_freq_scale",
         "rope_scaling_type", "yarn_ext_factor", "yarn_attn_factor", "yarn_beta_fast",
         "yarn_beta_slow", "yarn_orig_ctx", "swa_full", "offload_kqv", "op_offload")

KVCacheType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]


class ContextKnobs(TypedDict, total=False):
    """The knob keywords of ``Model.new_context`` (the ``[context]`` keys of the same names
    describe each; unset ones take llama.cpp's default or the model's)."""

    flash_attn: Literal["auto", "on", "off"]
    type_k: KVCacheType
    type_v: KVCacheType
    rope_freq_base: float | None
    rope_freq_scale: float | None
    rope_scaling_type: Literal["none", "linear", "yarn", "longrope"] | None
    yarn_ext_factor: float | None
    yarn_attn_factor: float | None
    yarn_beta_fast: float | None
    yarn_beta_slow: float | None
    yarn_orig_ctx: int | None
    swa_full: bool
    offload_kqv: bool
    op_offload: bool


#: KV-cache types stored in blocks of 32 values (ggml's QK4_0 .. QK8_0, QK4_NL).
QUANTIZED_KV_TYPES = frozenset({"q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"})
_BLOCK = 32


def check_knobs(model: Model, values: Mapping[str, Any]) -> dict[str, Any]:
    """The knobs checked by the schema's ``[context]`` fields (``check_fields``: the one
    source of their types and ranges; unset ones take the fields' defaults), then against
    ``model``: the KV-cache combinations that
    ``llama_init_from_model`` refuses or that would make ggml assert."""
    unknown = sorted(set(values) - set(KNOBS))
    if unknown:
        raise ConfigError(f"new_context() got unknown keyword(s) {', '.join(unknown)}; the "
                          f"context knobs are: {', '.join(KNOBS)}", key=unknown[0])
    checked = check_fields(ContextConfig, values)
    knobs = {name: checked[name] if name in checked else field_default(ContextConfig, name)
             for name in KNOBS}
    _check_kv_types(model, knobs)
    return knobs


def _head_sizes(model: Model) -> tuple[int, int]:
    """The attention head sizes of keys and values (``n_embd_head_k``/``_v``)."""
    info = model.info
    metadata = model.metadata
    arch = info.architecture
    default = info.n_embd // info.n_head if info.n_head > 0 else 0

    def read(key: str) -> int:
        try:
            return int(metadata.get(f"{arch}.attention.{key}", default))
        except ValueError:
            return default

    return read("key_length"), read("value_length")


def _check_kv_types(model: Model, knobs: Mapping[str, Any]) -> None:
    type_k, type_v, flash_attn = knobs["type_k"], knobs["type_v"], knobs["flash_attn"]
    if type_v in QUANTIZED_KV_TYPES and flash_attn == "off":
        raise ConfigError(
            f"type_v={type_v!r} (a quantized V cache) needs flash attention, but flash_attn="
            "'off'; use flash_attn='auto' or 'on', or a type_v of f16/bf16/f32",
            key="type_v")
    if f"{model.info.architecture}.attention.kv_lora_rank" in model.metadata \
            and type_k != type_v:
        raise ConfigError(f"this model (multi-head latent attention) needs type_k == type_v, "
                          f"got {type_k!r} and {type_v!r}", key="type_v")
    head_k, head_v = _head_sizes(model)
    for name, kind, head in (("type_k", type_k, head_k), ("type_v", type_v, head_v)):
        if kind in QUANTIZED_KV_TYPES and head % _BLOCK:
            raise ConfigError(
                f"{name}={kind!r} stores blocks of {_BLOCK} values, but this model's attention "
                f"heads have {head}; use f16, bf16 or f32", key=name)


def default_threads() -> int:
    """Threads for a context when none are given: the physical cores this process may run
    on (its CPU affinity), at most the cgroup's CPU quota. See docs/architecture.md."""
    return choose_threads(_usable_cpus(), _siblings, _cgroup_quota())


def choose_threads(cpus: set[int], siblings: Any, quota: float | None) -> int:
    """One thread per physical core among ``cpus`` (``siblings(cpu)`` names the logical
    CPUs of its core), no more than ``quota`` CPUs' worth (rounded up), at least one."""
    cores = {siblings(cpu) for cpu in cpus}
    count = max(1, len(cores))
    if quota is not None and quota > 0:
        count = min(count, max(1, math.ceil(quota)))
    return count


def _usable_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def _siblings(cpu: int) -> frozenset[int] | int:
    """The logical CPUs sharing ``cpu``'s core (Linux sysfs); ``cpu`` itself elsewhere."""
    path = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
    try:
        text = path.read_text().strip()
    except OSError:
        return cpu
    found: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        try:
            found.update(range(int(low), int(high or low) + 1))
        except ValueError:
            return cpu
    return frozenset(found)


def _cgroup_quota() -> float | None:
    """CPUs' worth of time the cgroup (v2 ``cpu.max``, v1 ``cfs_quota_us``) allows, if limited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None
