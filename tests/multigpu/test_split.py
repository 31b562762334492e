"""Splitting one model over several GPUs (issue 15): the same greedy tokens as one GPU.

Runs only where a GPU backend sees at least two GPUs (``cuda``: the driver's device count;
``vulkan``: the loader's GPU-type devices); everywhere else each test is skipped with the
reason. ``row`` splits matrices by rows across devices, which needs the backend's split
buffer type: ggml's CUDA backend has one, ggml-vulkan does not, so ``row`` runs on cuda
only. The checks that need no GPU at all (parameter validation, one device) live with
each backend's tests (tests/vulkan, tests/cuda) and in tests/test_rpc_loopback.py, whose
two RPC workers are a real two-device layer split on the CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import llamakit


def _gpu_count(backend: str) -> tuple[int, str]:
    """How many GPUs ``backend`` would see here, and why none when there are none."""
    try:
        if backend == "cuda":
            from llamakit_cuda._driver import driver_devices

            probe = driver_devices()
            return len(probe.devices), probe.error or ""
        from llamakit_vulkan._loader import physical_devices

        gpus = [d for d in physical_devices() if d.type in ("gpu", "igpu")]
        return len(gpus), "" if gpus else "no Vulkan GPU"
    except ImportError as exc:
        return 0, f"llamakit-{backend} is not installed ({exc})"


BACKENDS = []
for _name in ("cuda", "vulkan"):
    _count, _why = _gpu_count(_name)
    BACKENDS.append(pytest.param(_name, marks=pytest.mark.skipif(
        _count < 2, reason=f"{_name}: needs 2 GPUs, found {_count} {_why}".strip())))

pytestmark = pytest.mark.gpu

PROMPTS = ("Hello world", "The quick brown fox", "Once upon a time")


@pytest.fixture(scope="module")
def split_model(synthetic_model: Any) -> Path:
    """Big enough that every layer is real work, small enough for any GPU."""
    return Path(synthetic_model(vocab="llama-bpe", n_embd=512, n_layer=8, n_head=8,
                                n_head_kv=4, n_ff=1024, dtype="f16"))


def _greedy(model: llamakit.Model, prompt: str, n: int = 24) -> list[int]:
    with model.new_context(n_ctx=256) as ctx:
        return ctx.generate(prompt, max_new_tokens=n, temperature=0).tokens


@pytest.fixture(scope="module", params=BACKENDS)
def one_gpu(request: pytest.FixtureRequest,
            split_model: Path) -> Iterator[tuple[str, list[list[int]]]]:
    backend = request.param
    with llamakit.load_model(split_model, backend=backend, n_gpu_layers=-1,
                             split_mode="none", main_gpu=0) as model:
        assert len(model.offload.devices) == 1
        yield backend, [_greedy(model, p) for p in PROMPTS]


@pytest.mark.parametrize(("split_mode", "tensor_split"), [
    ("layer", None), ("layer", [3.0, 1.0]), ("row", None), ("row", [1.0, 3.0])])
def test_two_gpus_match_one(one_gpu: tuple[str, list[list[int]]], split_model: Path,
                            split_mode: str, tensor_split: list[float] | None) -> None:
    backend, expected = one_gpu
    if split_mode == "row" and backend != "cuda":
        pytest.skip(f"{backend}: ggml has no row-split buffer type for it")
    shares = None if tensor_split is None else tensor_split + [0.0] * (
        _gpu_count(backend)[0] - len(tensor_split))
    with llamakit.load_model(split_model, backend=backend, n_gpu_layers=-1,
                             split_mode=split_mode, tensor_split=shares) as model:
        assert len(model.offload.devices) >= 2
        assert model.offload.split_mode == split_mode
        assert [_greedy(model, p) for p in PROMPTS] == expected


def test_main_gpu_moves_a_single_gpu_model(one_gpu: tuple[str, list[list[int]]],
                                           split_model: Path) -> None:
    """split_mode none on the second GPU gives the first GPU's tokens."""
    backend, expected = one_gpu
    with llamakit.load_model(split_model, backend=backend, n_gpu_layers=-1,
                             split_mode="none", main_gpu=1) as model:
        assert len(model.offload.devices) == 1
        assert [_greedy(model, p) for p in PROMPTS] == expected
