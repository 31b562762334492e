"""Context knobs (flash attention, KV-cache types, RoPE/YaRN, offload), their checks, the
thread default and what ``llamakit info`` shows of a model's defaults."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import llamakit
from llamakit._context_knobs import choose_threads

# Head size 32: the quantized KV-cache types (blocks of 32) fit.
WIDE = {"n_embd": 128, "n_head": 4, "n_head_kv": 2, "n_ff": 256, "seed": 5}
PROMPT = "The capital of France is a city"


@pytest.fixture(scope="module")
def wide(synthetic_model: Callable[..., Path]) -> Iterator[llamakit.Model]:
    with llamakit.load_model(synthetic_model(**WIDE), backend="cpu") as model:
        yield model


def _last_logits(ctx: llamakit.Context) -> np.ndarray:
    ctx.generate(PROMPT, max_new_tokens=0)
    ctx.generate(PROMPT, max_new_tokens=1, temperature=0)
    return ctx._handle.logits(-1)


def _greedy(model: llamakit.Model, **knobs: object) -> list[int]:
    with model.new_context(n_ctx=128, n_threads=2, **knobs) as ctx:  # type: ignore[arg-type]
        return ctx.generate(PROMPT, max_new_tokens=8, temperature=0).tokens


def test_kv_cache_types_and_flash_attention_generate(wide: llamakit.Model) -> None:
    """Quantized and bf16 KV caches, with flash attention on or auto, generate text; F16
    with and without flash attention agree on greedy tokens."""
    plain = _greedy(wide)
    assert _greedy(wide, flash_attn="off") == plain
    assert _greedy(wide, flash_attn="on") == plain
    for type_k, type_v in (("q8_0", "q8_0"), ("q4_0", "f16"), ("bf16", "bf16"),
                           ("q5_1", "iq4_nl")):
        tokens = _greedy(wide, type_k=type_k, type_v=type_v)
        assert len(tokens) == 8


def test_quantized_v_without_flash_attention_is_refused(wide: llamakit.Model) -> None:
    """llama.cpp cannot run a quantized V cache without flash attention: a ConfigError
    naming type_v, not a failed context."""
    with pytest.raises(llamakit.ConfigError, match="needs flash attention") as info:
        wide.new_context(n_ctx=64, type_v="q8_0", flash_attn="off")
    assert info.value.key == "type_v"
    with wide.new_context(n_ctx=64, type_k="q8_0", flash_attn="off") as ctx:
        assert ctx.generate("Hi", max_new_tokens=2, temperature=0).tokens


def test_quantized_cache_needs_head_size_multiple_of_32(tiny_model_path: Path) -> None:
    """Head size 16 (the tiny model) cannot hold q8_0 blocks: ConfigError, never an abort."""
    with llamakit.load_model(tiny_model_path, backend="cpu") as model:
        for name in ("type_k", "type_v"):
            with pytest.raises(llamakit.ConfigError, match="heads have 16") as info:
                model.new_context(n_ctx=64, **{name: "q4_0"})  # type: ignore[arg-type]
            assert info.value.key == name


@pytest.mark.parametrize("knobs, match", [
    ({"type_k": "q4_K"}, "type_k"), ({"flash_attn": True}, "flash_attn"),
    ({"rope_freq_base": -1.0}, "greater than 0"), ({"yarn_orig_ctx": 0}, "yarn_orig_ctx"),
    ({"swa_full": "yes"}, "swa_full"), ({"flash_atn": "on"}, "unknown keyword.*flash_atn"),
], ids=["type", "bool-for-literal", "negative", "zero", "str-for-bool", "typo"])
def test_bad_knobs_are_config_errors(wide: llamakit.Model, knobs: dict[str, object],
                                     match: str) -> None:
    """The schema's [context] fields validate the keywords (one source of truth)."""
    with pytest.raises(llamakit.ConfigError, match=match):
        wide.new_context(n_ctx=64, **knobs)  # type: ignore[arg-type]


def test_rope_knobs_reach_llama_cpp(wide: llamakit.Model) -> None:
    """The model's own RoPE base changes nothing; another base, a frequency scale or YaRN
    scaling change the logits; offload and SWA switches are accepted."""
    with wide.new_context(n_ctx=128, n_threads=2) as ctx:
        base = _last_logits(ctx)
    variants = {"same": {"rope_freq_base": 10000.0},
                "base": {"rope_freq_base": 500.0},
                "scale": {"rope_freq_scale": 0.25},
                "yarn": {"rope_scaling_type": "yarn", "rope_freq_scale": 0.25,
                         "yarn_orig_ctx": 2048}}
    found = {}
    for name, knobs in variants.items():
        with wide.new_context(n_ctx=128, n_threads=2, **knobs) as ctx:  # type: ignore[arg-type]
            found[name] = _last_logits(ctx)
    assert np.array_equal(found["same"], base)
    for name in ("base", "scale", "yarn"):
        assert not np.allclose(found[name], base), name
    assert not np.allclose(found["scale"], found["yarn"])
    with wide.new_context(n_ctx=64, swa_full=False, offload_kqv=False,
                          op_offload=False) as ctx:
        assert ctx.generate("Hi", max_new_tokens=2, temperature=0).tokens


def test_config_file_and_flags_carry_the_knobs(wide: llamakit.Model, tmp_path: Path) -> None:
    """[context] keys reach the context from a config file; a flag combination llama.cpp
    cannot run is one error line naming the key."""
    config = tmp_path / "llamakit.toml"
    config.write_text(f'[model]\npath = "{wide.path}"\n[backend]\nname = "cpu"\n'
                      '[context]\nn_ctx = 64\ntype_k = "q8_0"\ntype_v = "q8_0"\n'
                      'flash_attn = "on"\n')
    model, ctx = llamakit.from_config(config)
    with model, ctx:
        assert ctx.generate("Hi", max_new_tokens=2, temperature=0).tokens
    proc = subprocess.run([sys.executable, "-m", "llamakit", "generate", str(wide.path), "Hi",
                           "--backend", "cpu", "--type-v", "q4_0", "--flash-attn", "off",
                           "--max-new-tokens", "2"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "type_v" in proc.stderr and "Traceback" not in proc.stderr


def test_thread_default_counts_physical_cores_within_the_quota() -> None:
    """One thread per physical core the process may use, capped by the CPU quota."""
    pairs = {0: 0, 1: 0, 2: 1, 3: 1, 4: 2, 5: 2}  # three cores, two threads each
    assert choose_threads(set(pairs), pairs.__getitem__, None) == 3
    assert choose_threads({0, 1}, pairs.__getitem__, None) == 1
    assert choose_threads(set(pairs), pairs.__getitem__, 1.5) == 2
    assert choose_threads(set(pairs), pairs.__getitem__, 0.2) == 1
    assert choose_threads(set(), pairs.__getitem__, None) == 1


def test_info_shows_the_models_defaults(synthetic_model: Callable[..., Path]) -> None:
    """llamakit info --json reports RoPE, sliding window and KV-cache facts from the file."""
    path = synthetic_model(**WIDE, metadata={
        "llama.rope.freq_base": 500000.0, "llama.rope.scaling.type": "yarn",
        "llama.rope.scaling.factor": 4.0, "llama.rope.scaling.original_context_length": 512,
        "llama.attention.sliding_window": 64})
    proc = subprocess.run([sys.executable, "-m", "llamakit", "info", str(path), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    defaults = json.loads(proc.stdout)["defaults"]
    assert defaults["rope_freq_base"] == 500000.0
    assert defaults["rope_freq_scale"] == 0.25
    assert defaults["rope_scaling_type"] == "yarn"
    assert defaults["yarn_orig_ctx"] == 512
    assert defaults["n_swa"] == 64
    assert defaults["head_size_k"] == 32 and defaults["quantized_kv_cache"] is True
    assert defaults["n_ctx"] == 2048 and defaults["n_threads"] >= 1
    text = subprocess.run([sys.executable, "-m", "llamakit", "info", str(path)],
                          capture_output=True, text=True, timeout=120).stdout
    assert "freq_base 500000, freq_scale 0.25, scaling yarn" in text
    assert "sliding window 64" in text
