"""The CUDA backend on a real NVIDIA GPU: same greedy tokens as the CPU backend, offload
reporting, the probe through ggml's device API, and `auto` choosing it. Skipped without a
CUDA device or without the toolkit to build the variant (CI)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import llamakit

llamakit_cuda = pytest.importorskip("llamakit_cuda")
from llamakit_cuda._driver import driver_devices  # noqa: E402

DRIVER = driver_devices()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DRIVER.error is not None, reason=f"no CUDA device: {DRIVER.error}"),
]


@pytest.fixture(scope="module")
def cuda_ready() -> None:
    problems = llamakit_cuda.cuda_backend().check_prerequisites()
    if problems:
        pytest.skip("CUDA build prerequisites missing: " + "; ".join(map(str, problems)))
    reason = llamakit_cuda.cuda_backend().check_usable({})
    if reason is not None:
        pytest.skip(f"CUDA backend unusable here: {reason}")


@pytest.fixture(scope="module")
def pair(cuda_ready: None,
         tiny_model_path: Path) -> Iterator[tuple[llamakit.Model, llamakit.Model]]:
    with llamakit.load_model(tiny_model_path, backend="cpu") as cpu, \
            llamakit.load_model(tiny_model_path, backend="cuda", n_gpu_layers=-1) as gpu:
        yield cpu, gpu


def _greedy(model: llamakit.Model, prompt: str, n: int = 24) -> list[int]:
    with model.new_context(n_ctx=128, n_threads=2) as ctx:
        return ctx.generate(prompt, max_new_tokens=n, temperature=0).tokens


def test_full_offload_matches_cpu(pair: tuple[llamakit.Model, llamakit.Model]) -> None:
    """All layers on the GPU give the CPU backend's greedy tokens, in one process."""
    cpu, gpu = pair
    assert gpu.backend == "cuda" and cpu.backend == "cpu"
    for prompt in ("Hello world", "The quick brown fox", "Once upon a time"):
        assert _greedy(gpu, prompt) == _greedy(cpu, prompt)


def test_partial_offload_matches_cpu(pair: tuple[llamakit.Model, llamakit.Model],
                                     tiny_model_path: Path) -> None:
    cpu, _ = pair
    with llamakit.load_model(tiny_model_path, backend="cuda", n_gpu_layers=1) as partial:
        assert partial.offload.n_layers_offloaded == 1
        assert _greedy(partial, "Hello world") == _greedy(cpu, "Hello world")


def test_f16_model_matches_cpu(cuda_ready: None,
                               synthetic_model: Callable[..., Path]) -> None:
    """An F16 model (the GPU takes other kernels for it) also gives the CPU's tokens."""
    path = synthetic_model(dtype="f16", n_embd=128, n_layer=3, n_ff=256)
    with llamakit.load_model(path, backend="cpu") as cpu, \
            llamakit.load_model(path, backend="cuda", n_gpu_layers=-1) as gpu:
        for prompt in ("Hello world", "The quick brown fox"):
            assert _greedy(gpu, prompt) == _greedy(cpu, prompt)


def test_embeddings_agree_with_cpu(pair: tuple[llamakit.Model, llamakit.Model]) -> None:
    vectors = []
    for model in pair:
        with model.new_context(n_ctx=128, embeddings=True) as ctx:
            vectors.append(ctx.embeddings(["Hello world", "A second, longer sentence here"]))
    cosine = np.sum(vectors[0] * vectors[1], axis=1)
    assert np.all(cosine > 0.999), cosine


def test_offload_is_reported(pair: tuple[llamakit.Model, llamakit.Model]) -> None:
    _, gpu = pair
    info = gpu.offload
    assert info.backend == "cuda"
    assert info.devices == tuple(f"CUDA{d.ordinal}" for d in DRIVER.devices)
    assert info.n_layers_offloaded == info.n_layers_total == gpu.info.n_layer + 1


def test_probe_goes_through_ggml(pair: tuple[llamakit.Model, llamakit.Model]) -> None:
    """Once built, the probe's names and free memory come from ggml's device API and the
    compute capability from the driver."""
    found = llamakit_cuda.probe()
    assert found.available and found.built and found.reason == "ready"
    assert len(found.devices) == len(DRIVER.devices)
    for device, driver in zip(found.devices, DRIVER.devices, strict=True):
        assert device.name == f"CUDA{driver.ordinal}"
        assert device.description == driver.name
        assert device.compute_capability == driver.compute_capability
        assert device.memory_free is not None and 0 < device.memory_free <= device.memory_total
    assert "compute capability" in str(found)


def test_auto_picks_cuda(pair: tuple[llamakit.Model, llamakit.Model], tiny_model_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """auto prefers cuda to vulkan and cpu where it can run."""
    monkeypatch.delenv("LLAMAKIT_BACKEND", raising=False)  # the suite pins auto to cpu
    cpu, _ = pair
    with llamakit.load_model(tiny_model_path, backend="auto", n_gpu_layers=-1) as model:
        assert model.backend == "cuda"
        assert _greedy(model, "Hello world") == _greedy(cpu, "Hello world")
    assert [s.name for s in llamakit.backends()][:1] == ["cuda"]


def test_batch_steps_ahead_on_the_gpu(pair: tuple[llamakit.Model, llamakit.Model]) -> None:
    """A fully offloaded CUDA model starts each batch step's next decode before its text
    work; the tokens are the CPU backend's, with and without stop strings."""
    from llamakit._batch import starts_ahead
    cpu, gpu = pair
    assert starts_ahead(gpu) and not starts_ahead(cpu)
    prompts = ["Hello world", "The quick brown fox", "Once upon a time", "1 2 3", "A"]
    for stop in ([], ["zzz-never"]):
        runs = []
        for model in (cpu, gpu):
            with model.new_context(n_ctx=1024, n_seq_max=3, n_threads=2) as ctx:
                runs.append([r.tokens for r in ctx.generate_batch(
                    prompts, max_new_tokens=12, temperature=0, stop=stop)])
        assert runs[0] == runs[1]


def test_backend_sampling_on_the_gpu(pair: tuple[llamakit.Model, llamakit.Model]) -> None:
    """backend_sampling: greedy with a ban and penalties sampled inside the CUDA graph gives
    the host's tokens, alone and in generate_batch; the default chain is reproducible."""
    _, gpu = pair
    ban = {t: float("-inf") for t in gpu.special_tokens if gpu.is_eog(t)}
    prompts = ["Hello world", "The quick brown fox", "Once upon a time", "1 2 3"]
    with gpu.new_context(n_ctx=512, n_seq_max=4, n_threads=2) as ctx:
        for settings in ({"temperature": 0, "logit_bias": ban},
                         {"temperature": 0, "repeat_penalty": 1.3, "presence_penalty": 0.2}):
            host = ctx.generate(prompts[0], max_new_tokens=24, **settings)
            graph = ctx.generate(prompts[0], max_new_tokens=24, backend_sampling=True,
                                 **settings)
            assert ctx._handle.sampled_in_graph
            assert graph.tokens == host.tokens
        host_batch = ctx.generate_batch(prompts, max_new_tokens=16, temperature=0,
                                        logit_bias=ban)
        graph_batch = ctx.generate_batch(prompts, max_new_tokens=16, temperature=0,
                                         logit_bias=ban, backend_sampling=True)
        assert [r.tokens for r in graph_batch] == [r.tokens for r in host_batch]
        seeded = [ctx.generate(prompts[1], max_new_tokens=16, seed=4, logit_bias=ban,
                               backend_sampling=True).tokens for _ in range(2)]
        assert seeded[0] == seeded[1] and len(seeded[0]) == 16


def test_prompts_and_tokens_keep_their_own_cuda_graphs(
        pair: tuple[llamakit.Model, llamakit.Model]) -> None:
    """llama.cpp/patches/cuda-graph-key.patch: a prompt's graph and a token's graph share
    their first node's address; keyed apart, alternating generations stop resetting each
    other's CUDA graph (ggml logs each reset at debug level), and the replayed graphs give
    the CPU's tokens for every new prompt."""
    cpu, gpu = pair
    ban = {t: float("-inf") for t in gpu.special_tokens if gpu.is_eog(t)}
    # Same length, a different first token each: no prefix is reused, every prompt has the
    # same graph shape.
    prompts = [[10 + i, *range(20, 35)] for i in range(6)]
    warmups: list[str] = []

    def listen(level: int, line: str) -> None:
        if "CUDA graph warmup" in line:
            warmups.append(line.strip())

    with gpu.new_context(n_ctx=256, n_threads=2) as ctx, \
            cpu.new_context(n_ctx=256, n_threads=2) as reference, \
            ctx._handle.native.log_listener(listen):
        for i, prompt in enumerate(prompts):
            if i == 2:
                # ggml's debug lines do reach the listener: the check below can fail
                assert any("warmup complete" in line for line in warmups), warmups
                del warmups[:]  # both graphs have warmed up by now
            got = ctx.generate(prompt, max_new_tokens=12, temperature=0, logit_bias=ban)
            want = reference.generate(prompt, max_new_tokens=12, temperature=0,
                                      logit_bias=ban)
            assert got.tokens == want.tokens
    assert not [line for line in warmups if "reset" in line], warmups
