"""Numbers llama.cpp cannot take, and the memory a context's KV cache will need.

llama.cpp keeps thread counts, positions and layer counts in C ints and sizes its thread
pool with a fixed array; a value past those limits aborts, overflows or allocates without
bound. The limits live here so the schema, the keyword path and the native layer agree.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from ._errors import ConfigError, ContextMemoryError

__all__ = ["INT32_MAX", "MAX_THREADS", "check_int32", "check_kv_fits", "check_threads",
           "host_memory_bytes", "kv_cache_bytes"]

#: ``GGML_MAX_N_THREADS``: ggml's thread pool is a fixed array of this many workers, and
#: more threads abort (``std::bad_alloc``) or write past it.
MAX_THREADS = 512
#: Positions, ``n_gpu_layers`` and divisors are C ``int``/``int32_t`` in llama.h.
INT32_MAX = 2**31 - 1


def check_threads(name: str, value: int) -> int:
    """``value`` if it is a thread count ggml can run, else ConfigError naming the limit."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_THREADS:
        raise ConfigError(f"{name} must be an integer from 1 to {MAX_THREADS} (ggml's "
                          f"GGML_MAX_N_THREADS), got {value!r}", key=name)
    return value


def check_int32(name: str, value: Any, low: int = -(2**31)) -> int:
    """``value`` if it is an int in ``[low, INT32_MAX]`` (a C int of llama.h)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= INT32_MAX:
        raise ConfigError(f"{name} must be an integer from {low} to {INT32_MAX} (a C int in "
                          f"llama.cpp), got {value!r}", key=name)
    return value


def kv_cache_bytes(info: Mapping[str, Any], n_ctx: int) -> int:
    """A lower estimate of the KV cache of ``n_ctx`` cells: keys and values of every layer
    in F16 (llama.cpp's default cache type), ``n_embd / n_head`` per KV head."""
    n_layer, n_head, n_head_kv = (int(info[k]) for k in ("n_layer", "n_head", "n_head_kv"))
    if n_layer <= 0 or n_head <= 0 or n_head_kv <= 0:
        return 0
    head_dim = max(info["n_embd"] // n_head, 1)
    return int(n_ctx) * n_layer * 2 * int(head_dim) * n_head_kv * 2


def _meminfo() -> dict[str, int]:
    found: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isascii() and parts[0].isdecimal():
                    found[name] = int(parts[0]) * 1024
    except OSError:
        pass
    return found


def host_memory_bytes() -> int:
    """RAM plus swap of this machine (0 when unknown)."""
    info = _meminfo()
    if "MemTotal" in info:
        return info["MemTotal"] + info.get("SwapTotal", 0)
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 0


def check_kv_fits(info: Mapping[str, Any], n_ctx: int,
                  accelerator_bytes: Iterable[int] = ()) -> None:
    """Refuse a context whose KV cache cannot fit in the machine's memory (RAM, swap and
    the accelerators' memory together) before llama.cpp spends minutes allocating it."""
    need = kv_cache_bytes(info, n_ctx)
    have = host_memory_bytes()
    if need == 0 or have == 0:
        return
    have += sum(accelerator_bytes)
    if need > have:
        raise ContextMemoryError(
            f"a context of n_ctx={n_ctx} needs a KV cache of at least {need / 2**30:.1f} GiB "
            f"(estimate: {info['n_layer']} layers, F16 keys and values), more than this "
            f"machine's {have / 2**30:.1f} GiB of memory; use a smaller n_ctx",
            estimate=need, available=have)
