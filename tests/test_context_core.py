"""The Context core, the prompt cache, the Owned lifecycle and the ambient config."""

from __future__ import annotations

from pathlib import Path

import pytest

import llamakit
from llamakit._backends import default_native
from llamakit._config import ambient, ambient_config, clear_ambient_config
from llamakit._context_core import ContextCore
from llamakit._errors import ClosedError
from llamakit._owned import Owned
from llamakit._prompt_cache import PromptCache


def test_public_objects_share_one_lifecycle(model: llamakit.Model) -> None:
    """Model, Context, LoraAdapter and SamplerChain take close/closed/with from Owned."""
    for cls in (llamakit.Model, llamakit.Context, llamakit.LoraAdapter, llamakit.SamplerChain):
        assert issubclass(cls, Owned), cls
    with model.new_context(n_ctx=64, n_threads=1) as ctx:
        assert isinstance(ctx, ContextCore) and not ctx.closed
    assert ctx.closed
    ctx.close()  # a second close does nothing
    with pytest.raises(ClosedError):
        ctx._handle.check_open()
    with pytest.raises(ClosedError):
        _ = ctx.n_ctx


def test_prompt_cache_follows_sequence_zero(ctx: llamakit.Context) -> None:
    """The cache reuses the shared prefix, and forgets or cuts what the KV cache lost."""
    cache = ctx._cache
    assert isinstance(cache, PromptCache)
    prompt = ctx.tokenize("hello world, hello again")
    with ctx._lock:
        assert cache.evaluate(prompt, ctx.n_batch) == 0
        assert cache.tokens == prompt == ctx._past
        assert cache.evaluate([*prompt, prompt[-1]], ctx.n_batch) == len(prompt)
        assert len(cache) == len(prompt) + 1 == ctx.kv.seq_pos_max(0) + 1
    ctx.kv.seq_rm(0, 3, -1)
    assert cache.tokens == prompt[:3]
    ctx.kv.seq_rm(0, 1, 2)  # a hole in the middle: the prefix is no longer known
    assert cache.tokens == [] and ctx.kv.seq_pos_max(0) == -1
    with ctx._lock:
        cache.evaluate(prompt, ctx.n_batch)
    ctx.reset()
    assert cache.tokens == [] and ctx.kv.seq_pos_max(0) == -1


def test_default_native_prefers_a_loaded_variant(model: llamakit.Model) -> None:
    """Work that is the same in every variant uses one already loaded, not a new one."""
    assert default_native() is model._handle.native


def test_ambient_config_is_read_once_per_environment(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    """The process config is loaded once; a changed LLAMAKIT_* variable or file reloads it,
    and clear_ambient_config() forgets it."""
    calls = []
    real = ambient.load_config

    def counting(**kwargs: object) -> llamakit.Config:
        calls.append(kwargs)
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ambient, "load_config", counting)
    monkeypatch.delenv("LLAMAKIT_CONFIG", raising=False)
    clear_ambient_config()
    monkeypatch.setenv("LLAMAKIT_UI__PROGRESS", "never")
    assert ambient_config().ui.progress == "never"
    assert ambient_config() is ambient_config()
    assert len(calls) == 1
    monkeypatch.setenv("LLAMAKIT_UI__PROGRESS", "always")
    assert ambient_config().ui.progress == "always" and len(calls) == 2
    config = tmp_path / "llamakit.toml"
    config.write_text('[ui]\nprogress = "auto"\n')
    monkeypatch.delenv("LLAMAKIT_UI__PROGRESS")
    monkeypatch.setenv("LLAMAKIT_CONFIG", str(config))
    assert ambient_config().ui.progress == "auto" and len(calls) == 3
    config.write_text('[ui]\nprogress = "never"   # longer, so the size changes\n')
    assert ambient_config().ui.progress == "never" and len(calls) == 4
    clear_ambient_config()
    ambient_config()
    assert len(calls) == 5
