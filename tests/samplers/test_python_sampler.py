"""Python samplers as stages of a native chain: candidates, selection, errors, state."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

import llamakit
from llamakit import Candidates, SamplerChain, SamplerError


class Recorder:
    """Bans its best candidate and records what it saw."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.accepted: list[int] = []
        self.resets = 0

    def apply(self, candidates: Candidates) -> None:
        self.sizes.append(len(candidates))
        best = int(np.argmax(candidates.logits))
        candidates.logits[best] = -np.inf

    def accept(self, token: int) -> None:
        self.accepted.append(token)

    def reset(self) -> None:
        self.resets += 1


class PickLast:
    """A selecting stage: always the last candidate."""

    def apply(self, candidates: Candidates) -> None:
        candidates.selected = len(candidates) - 1


def _peaks(model: llamakit.Model) -> np.ndarray:
    logits = np.full(model.n_vocab, -10.0, dtype=np.float32)
    logits[[100, 200, 300, 400]] = [4.0, 3.0, 2.0, 1.0]
    return logits


def test_python_stage_sits_between_native_stages(model: llamakit.Model) -> None:
    """A Python stage sees top_k's output and greedy sees the Python stage's change."""
    recorder = Recorder()
    chain = SamplerChain(model).add_top_k(3).add_custom(recorder).add_greedy()
    assert chain.stages == ["top_k", "Recorder", "greedy"]
    out = chain.apply(_peaks(model))
    assert recorder.sizes == [3]
    assert out.selected_token == 200


def test_python_stage_in_generation_sees_prompt_and_tokens(ctx: llamakit.Context) -> None:
    """During generate, a Python stage is reset, accepts the prompt, then each token."""
    recorder = Recorder()
    chain = SamplerChain(ctx.model).add_top_k(5).add_custom(recorder).add_greedy()
    result = ctx.generate("Hello world", max_new_tokens=4, sampler=chain)
    assert recorder.resets == 1 and recorder.sizes == [5] * len(result.tokens)
    assert recorder.accepted[:len(result.prompt_tokens)] == result.prompt_tokens
    assert recorder.accepted[len(result.prompt_tokens):][:len(result.tokens)] == result.tokens
    greedy = ctx.generate("Hello world", max_new_tokens=4, temperature=0).tokens
    assert result.tokens[0] != greedy[0]  # the stage banned greedy's choice


def test_python_stage_can_select(model: llamakit.Model) -> None:
    """A Python stage may pick the token itself; keep() reorders the candidates."""
    class Reverse:
        def apply(self, candidates: Candidates) -> None:
            candidates.keep(np.arange(len(candidates))[::-1])

    out = SamplerChain(model).add_top_k(3).add_custom(Reverse()).add_custom(PickLast()) \
        .apply(_peaks(model))
    assert out.ids.tolist() == [300, 200, 100] and out.selected_token == 100


def test_python_samplers_in_keywords(ctx: llamakit.Context) -> None:
    """A Sampler object in samplers= joins the keyword chain where it is listed."""
    recorder = Recorder()
    result = ctx.generate("Hello", max_new_tokens=3, temperature=0,
                          samplers=["top_k", recorder])
    assert len(recorder.sizes) == len(result.tokens) == 3


def test_python_exception_propagates_and_stops_the_chain(ctx: llamakit.Context) -> None:
    """A Python stage's exception reaches the caller unchanged; no later stage accepts."""
    class Boom:
        def apply(self, candidates: Candidates) -> None:
            raise KeyError("boom")

    after = Recorder()
    chain = SamplerChain(ctx.model).add_custom(Boom()).add_custom(after).add_greedy()
    with pytest.raises(KeyError, match="boom"):
        ctx.generate("Hi", max_new_tokens=2, sampler=chain)
    assert after.sizes == []
    with pytest.raises(KeyError):
        chain.apply(_peaks(ctx.model))


@pytest.mark.parametrize("mutate", [
    lambda c: setattr(c, "selected", len(c)),
    lambda c: setattr(c, "selected", 1.5),
    lambda c: c.keep([]),
    lambda c: c.keep([0, 0]),
    lambda c: c.keep([len(c)]),
    lambda c: c.ids.__setitem__(0, 5),
], ids=["selected-out-of-range", "selected-float", "keep-none", "keep-repeat",
        "keep-out-of-range", "write-ids"])
def test_invalid_candidate_changes_raise(model: llamakit.Model, mutate: Any) -> None:
    """Changes that would corrupt llama.cpp's array are errors, never crashes."""
    class Bad:
        def apply(self, candidates: Candidates) -> None:
            mutate(candidates)

    with pytest.raises((SamplerError, ValueError)):
        SamplerChain(model).add_top_k(3).add_custom(Bad()).add_greedy().apply(_peaks(model))


def test_clone_copies_python_state(model: llamakit.Model) -> None:
    """clone() deep-copies a Python stage, or calls its clone()."""
    class Counter:
        def __init__(self) -> None:
            self.n = 0
            self.cloned = False

        def apply(self, candidates: Candidates) -> None:
            self.n += 1

        def clone(self) -> Counter:
            twin = copy.copy(self)
            twin.cloned = True
            return twin

    counter, recorder = Counter(), Recorder()
    chain = SamplerChain(model).add_custom(counter).add_custom(recorder).add_greedy()
    chain.apply(_peaks(model))
    twin = chain.clone()
    twin.apply(_peaks(model))
    twin.apply(_peaks(model))
    assert counter.n == 1 and recorder.sizes == [model.n_vocab]
    twin.close()
    chain.close()


def test_non_samplers_are_refused(model: llamakit.Model) -> None:
    """An object without apply() is not accepted as a stage."""
    with pytest.raises(SamplerError, match="apply"):
        SamplerChain(model).add_custom(object())  # type: ignore[arg-type]


def test_candidates_helpers() -> None:
    """from_logits builds whole-vocabulary candidates; softmax fills probabilities."""
    c = Candidates.from_logits([0.0, np.log(3.0)])
    c.softmax()
    assert c.probs.tolist() == pytest.approx([0.25, 0.75])
    assert c.selected_token is None and len(c) == 2 and isinstance(llamakit.Sampler, type)
