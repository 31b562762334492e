"""Class 2 of issue 21: numbers llama.cpp cannot take are refused with their limit, in
subprocesses that count crashes and hangs."""

from __future__ import annotations

from pathlib import Path

import pytest
from attacks import Attack, failures, run_attacks

import llamakit

_CTX = "model().new_context(n_ctx=64, n_batch=16, n_threads=1)"

ATTACKS = [
    Attack("n_threads=5000", f"{_CTX[:-1]}, n_threads_batch=1).close()\n"
           "model().new_context(n_ctx=64, n_threads=5000).generate('hi', max_new_tokens=1)",
           ("ConfigError", "ValueError")),
    Attack("n_threads_batch=100000", "model().new_context(n_ctx=64, n_threads=1, "
           "n_threads_batch=100000).generate('hi', max_new_tokens=1)",
           ("ConfigError", "ValueError")),
    Attack("config-n_threads=4096", "llamakit.load_config(env={}, context={'n_threads': 4096})",
           ("ConfigError", "ValueError")),
    Attack("n_ctx=1e9", "model().new_context(n_ctx=10**9, n_threads=1)",
           ("ContextMemoryError", "MemoryError"), timeout=30),
    Attack("n_ctx=2**31", "model().new_context(n_ctx=2**31, n_threads=1)",
           ("ConfigError", "ValueError")),
    Attack("n_gpu_layers=2**40", "llamakit.load_model(model_path, backend='cpu', "
           "n_gpu_layers=2**40)", ("ConfigError", "ValueError")),
    Attack("main_gpu=2**40", "llamakit.load_model(model_path, backend='cpu', main_gpu=2**40)",
           ("LlamakitError", "ValueError")),
    Attack("seq_div-d=2**31", f"{_CTX}.kv.seq_div(0, 0, 10, 2**31)",
           ("ConfigError", "ValueError")),
    Attack("seq_add-delta=2**31", f"{_CTX}.kv.seq_add(0, 0, 10, 2**31)",
           ("ConfigError", "ValueError")),
    Attack("seq_add-past-int32", f"ctx = {_CTX}\nctx.generate('hello world', max_new_tokens=2)\n"
           "ctx.kv.seq_add(0, 0, -1, 2**31 - 2)", ("ConfigError", "ValueError")),
    Attack("seq_rm-p1=2**40", f"{_CTX}.kv.seq_rm(0, 0, 2**40)", ("ConfigError", "ValueError")),
    Attack("n_batch=2**40", "model().new_context(n_ctx=64, n_batch=2**40, n_threads=1)",
           ("ConfigError", "ValueError")),
]


def test_numbers_past_llama_cpps_limits_are_typed_errors(tiny_model_path: Path,
                                                         tmp_path: Path) -> None:
    """No out-of-range number crashes, hangs or raises an untyped error; each is refused."""
    results = run_attacks(ATTACKS, tiny_model_path, tmp_path)
    assert failures(ATTACKS, results) == {}
    assert "512" in results["n_threads=5000"]["message"]
    assert "GiB" in results["n_ctx=1e9"]["message"]


def test_a_kv_cache_larger_than_memory_is_refused_with_its_estimate(
        model: llamakit.Model) -> None:
    """The estimate is in the error, and n_ctx that fits is still accepted."""
    with pytest.raises(llamakit.ContextMemoryError, match="GiB") as info:
        model.new_context(n_ctx=2**31 - 1, n_threads=1)
    assert info.value.estimate > info.value.available > 0
    with model.new_context(n_ctx=128, n_threads=1) as ctx:
        assert ctx.n_ctx >= 128


def test_schema_states_the_thread_limit() -> None:
    """The config refuses more threads than ggml's pool holds, naming the limit."""
    with pytest.raises(llamakit.ConfigError, match="512"):
        llamakit.load_config(env={}, context={"n_threads": 513})
