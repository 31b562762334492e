"""The shim's sampling shortcuts give exactly llama.cpp's result.

``lk_sampler_sample`` takes the argmax of the logits for a greedy-only chain and, for a
chain whose first stage is top-k, starts from the k best candidates instead of all
n_vocab of them, but only when ties cannot make llama.cpp's partial sort choose
differently. Each test compares the shortcut with the general path (the same chain with
the promise withdrawn: ``first_top_k = 0``) over real decodes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import llamakit
from llamakit import SamplerChain


def _draws(ctx: llamakit.Context, chain: SamplerChain, n: int, *, fast: bool,
           prompt: str = "Once upon a time") -> list[int]:
    """Sample ``n`` tokens, feeding each back, from a fresh evaluation of one prompt."""
    handle = chain._handle
    promised = handle.first_top_k
    if not fast:
        handle.first_top_k = 0
    try:
        ctx.reset()
        chain.reset()
        ctx._handle.decode(ctx.model.tokenize(prompt))
        out: list[int] = []
        for _ in range(n):
            token = chain.sample(ctx)
            out.append(token)
            ctx._handle.decode([token])
        return out
    finally:
        handle.first_top_k = promised


@pytest.mark.parametrize("k", [1, 2, 40, 1000])
def test_top_k_first_matches_the_general_path(ctx: llamakit.Context, k: int) -> None:
    """A chain starting with top-k(k) samples the same tokens with and without the
    shortcut (seeded dist after top-p, min-p and temperature)."""
    chain = (SamplerChain(ctx.model).add_top_k(k).add_top_p(0.95).add_min_p(0.05)
             .add_temp(1.5).add_dist(seed=1234))
    assert chain._handle.first_top_k == k
    assert _draws(ctx, chain, 24, fast=True) == _draws(ctx, chain, 24, fast=False)


def test_only_a_first_top_k_is_promised(model: llamakit.Model) -> None:
    """A top-k stage after another stage promises nothing, nor does a chain without one."""
    assert SamplerChain(model).add_temp(0.5).add_top_k(5).add_dist(seed=1)._handle \
        .first_top_k == 0
    assert SamplerChain(model).add_top_p(0.9).add_dist(seed=1)._handle.first_top_k == 0
    chain = SamplerChain(model).add_top_k(7).add_dist(seed=1)
    assert chain.clone()._handle.first_top_k == 7


def test_greedy_only_chain_matches_apply(ctx: llamakit.Context) -> None:
    """The greedy-only shortcut picks what llama.cpp's greedy stage picks on the same
    logits, token after token."""
    greedy = SamplerChain(ctx.model).add_greedy()
    general = SamplerChain(ctx.model).add_greedy()
    ctx.reset()
    ctx._handle.decode(ctx.model.tokenize("The quick brown fox"))
    for _ in range(16):
        logits = ctx._handle.logits(-1).copy()
        token = greedy.sample(ctx)
        assert token == general.apply(logits).selected_token == int(np.argmax(logits))
        ctx._handle.decode([token])


def _tie_output_rows(path: Path, rows: range, source: int) -> None:
    """Overwrite ``rows`` of output.weight with twice row ``source``: where ``source``
    has the largest (positive) logit, the copies tie exactly above everything else."""
    from gguf import GGUFReader

    reader = GGUFReader(path, "r+")
    weight = next(t for t in reader.tensors if t.name == "output.weight")
    data: Any = weight.data
    doubled = data[source] * 2.0
    for row in rows:
        data[row] = doubled
    if hasattr(data, "flush"):
        data.flush()
    del reader


def test_ties_at_the_top_fall_back_to_llama_cpp(synthetic_model: Any, tmp_path: Path) -> None:
    """With 30 exactly equal logits at the top, top-k's result depends on llama.cpp's
    partial sort; the shortcut must step aside, so both paths still agree."""
    path = tmp_path / "ties.gguf"
    shutil.copy(synthetic_model(), path)
    with llamakit.load_model(path, backend="cpu", validate=False) as model, \
            model.new_context(n_ctx=128) as ctx:
        ctx._handle.decode(model.tokenize("Hello"))
        logits = ctx._handle.logits(-1)
        best = int(np.argmax(logits))
        assert logits[best] > 0
    _tie_output_rows(path, range(300, 330), best)
    with llamakit.load_model(path, backend="cpu", validate=False) as model, \
            model.new_context(n_ctx=128) as ctx:
        ctx._handle.decode(model.tokenize("Hello"))
        top = np.sort(ctx._handle.logits(-1))[::-1]
        assert top[0] == top[29] > top[30]  # the tie really is at the top
        for k in (10, 30, 31, 40):
            chain = (SamplerChain(model).add_top_k(k).add_top_p(1.0).add_temp(1.0)
                     .add_dist(seed=99))
            assert _draws(ctx, chain, 12, fast=True, prompt="Hello") == \
                _draws(ctx, chain, 12, fast=False, prompt="Hello")
