"""The llamakit_register_samplers hook: registration, conflicts, use by name everywhere."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import llamakit
from llamakit import Candidates, PluginError, SamplerChain, SamplerSpec, hookimpl
from llamakit._plugins.manager import PluginHost, reset_plugin_host


class BanToken:
    """Bans one token id (the plugin's sampler)."""

    def __init__(self, token: int) -> None:
        self.token = token

    def apply(self, candidates: Candidates) -> None:
        candidates.logits[candidates.ids == self.token] = -np.inf


def make_ban(model: llamakit.Model, token: int = 0) -> BanToken:
    if not 0 <= token < model.n_vocab:
        raise ValueError(f"no token {token}")
    return BanToken(token)


class BanPlugin:
    @hookimpl
    def llamakit_register_samplers(self) -> Sequence[SamplerSpec]:
        return [SamplerSpec("ban_token", make_ban, "bans one token id")]


@pytest.fixture
def host_with_plugin() -> Iterator[PluginHost]:
    """The process-wide plugin host with BanPlugin registered; restored afterwards."""
    host = PluginHost()
    host.register(BanPlugin(), name="ban-plugin")
    old = reset_plugin_host(host)
    try:
        yield host
    finally:
        reset_plugin_host(old)


def test_registered_sampler_is_tagged_with_its_plugin() -> None:
    """A sampler from an in-process plugin carries that plugin's name."""
    host = PluginHost(load_entry_points=False)
    host.register(BanPlugin(), name="ban-plugin")
    spec = host.samplers()["ban_token"]
    assert spec.plugin == "ban-plugin" and spec.description == "bans one token id"
    host.unregister("ban-plugin")
    assert "ban_token" not in host.samplers()


def test_duplicate_sampler_names_both_plugins() -> None:
    """Two plugins registering one sampler name is an error naming both."""
    host = PluginHost(load_entry_points=False)
    host.register(BanPlugin(), name="first-plugin")
    host.register(BanPlugin(), name="second-plugin")
    with pytest.raises(PluginError) as info:
        host.samplers()
    assert "first-plugin" in str(info.value) and "second-plugin" in str(info.value)


@pytest.mark.parametrize("returned", [["ban_token"], [SamplerSpec("top_k", make_ban)],
                                      [SamplerSpec("typ", make_ban)]],
                         ids=["not-a-spec", "native-name", "sequence-alias"])
def test_bad_registrations_name_the_plugin(returned: list[Any]) -> None:
    """A non-SamplerSpec or a llama.cpp stage name is a PluginError naming the plugin."""
    class Bad:
        @hookimpl
        def llamakit_register_samplers(self) -> Sequence[Any]:
            return returned

    host = PluginHost(load_entry_points=False)
    host.register(Bad(), name="bad-plugin")
    with pytest.raises(PluginError, match="bad-plugin"):
        host.samplers()


def test_spec_validates_its_name() -> None:
    """A SamplerSpec name must be a lower-case identifier and its factory callable."""
    with pytest.raises(PluginError):
        SamplerSpec("Bad Name", make_ban)
    with pytest.raises(PluginError):
        SamplerSpec("fine", "not callable")  # type: ignore[arg-type]


def test_plugin_sampler_in_a_chain(host_with_plugin: PluginHost, model: llamakit.Model) -> None:
    """chain.add(name, **params) builds the plugin's sampler with those parameters."""
    logits = np.full(model.n_vocab, -5.0, dtype=np.float32)
    logits[[10, 20]] = [3.0, 2.0]
    chain = SamplerChain(model).add("ban_token", token=10).add_greedy()
    assert chain.stages == ["ban_token", "greedy"]
    assert chain.apply(logits).selected_token == 20
    with pytest.raises(llamakit.SamplerError, match="ban_token.*ban-plugin"):
        SamplerChain(model).add("ban_token", token=-1)


def test_plugin_sampler_by_keyword(host_with_plugin: PluginHost,
                                   ctx: llamakit.Context) -> None:
    """samplers=[("name", params)] puts the plugin's sampler into the keyword chain."""
    first = ctx.generate("Hello", max_new_tokens=4, temperature=0).tokens
    banned = ctx.generate("Hello", max_new_tokens=4, temperature=0,
                          samplers=[("ban_token", {"token": first[0]})]).tokens
    assert first[0] not in banned


def test_plugin_sampler_from_config(host_with_plugin: PluginHost, tmp_path: Path,
                                    tiny_model_path: Path) -> None:
    """[sampling] samplers = [{name = ..., ...}] uses the plugin's sampler."""
    config = tmp_path / "llamakit.toml"
    config.write_text(
        f'[backend]\nname = "cpu"\n[model]\npath = "{tiny_model_path}"\n'
        '[context]\nn_ctx = 128\nn_threads = 1\n'
        '[sampling]\ntemperature = 0.0\nsamplers = [{name = "ban_token", token = 1}]\n',
        encoding="utf-8")
    model, ctx = llamakit.from_config(config)
    with model:
        first = ctx.generate("Hello", max_new_tokens=3, temperature=0,
                             samplers=[]).tokens
        config.write_text(config.read_text().replace("token = 1", f"token = {first[0]}"))
        model2, ctx2 = llamakit.from_config(config)
        with model2:
            assert first[0] not in ctx2.generate("Hello", max_new_tokens=3).tokens


class FailAfter:
    """Raises from its ``apply`` after ``calls`` calls (a plugin sampler with a bug)."""

    def __init__(self, calls: int) -> None:
        self.left = calls

    def apply(self, candidates: Candidates) -> None:
        self.left -= 1
        if self.left < 0:
            raise RuntimeError("plugin sampler bug")


class FailPlugin:
    @hookimpl
    def llamakit_register_samplers(self) -> Sequence[SamplerSpec]:
        return [SamplerSpec("fail_after", lambda model, calls=0: FailAfter(calls))]


def test_plugin_sampler_in_a_batch(host_with_plugin: PluginHost,
                                   model: llamakit.Model) -> None:
    """generate_batch samples every sequence of a step in one native call: a plugin's
    Python sampler still runs in each sequence's chain, and a sampler that raises stops
    the batch with its own error and leaves the context usable."""
    host_with_plugin.register(FailPlugin(), name="fail-plugin")
    prompts = ["Hello", "The sky", "One two", "Why"]
    with model.new_context(n_ctx=256, n_seq_max=2, n_threads=1) as bctx:
        plain = bctx.generate_batch(prompts, max_new_tokens=4, temperature=0)
        banned = bctx.generate_batch(
            prompts, max_new_tokens=4, temperature=0,
            samplers=[("ban_token", {"token": plain[2].tokens[0]})])
        assert plain[2].tokens[0] not in banned[2].tokens
        assert [r.tokens for r in banned] != [r.tokens for r in plain]
        with pytest.raises(RuntimeError, match="plugin sampler bug"):
            bctx.generate_batch(prompts, max_new_tokens=4, temperature=0,
                                samplers=[("fail_after", {"calls": 2})])
        again = bctx.generate_batch(prompts, max_new_tokens=4, temperature=0)
        assert [r.tokens for r in again] == [r.tokens for r in plain]
