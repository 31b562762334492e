"""Hundreds of malformed GGUF files: none crashes the process, each fails with a typed error."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from gguf_corpus import Case, apply, run_cases

import llamakit

# Families of damage the corpus must cover (the list), by case-id prefix.
_FAMILIES = ("truncate-", "magic-flip-", "version-flip-", "n_tensors", "n_kv", "count-",
             "keylen-", "strlen-", "tokenlen-", "namelen-", "kvtype-", "itemtype-", "ttype-",
             "ndims-", "ne0-", "overflow-", "offset-", "alignment", "duplicate-", "block_count",
             "hparam-", "random-", "garbage-")


def test_corpus_covers_every_kind_of_damage(corpus_cases: list[Case]) -> None:
    """The corpus has at least 300 files that must be rejected, from every family."""
    assert sum(c.expect == "reject" for c in corpus_cases) >= 300
    for family in _FAMILIES:
        assert any(c.id.startswith(family) for c in corpus_cases), family


def test_validator_rejects_or_passes_in_process(corpus_base: Path,
                                                corpus_cases: list[Case],
                                                tmp_path: Path) -> None:
    """On every corpus file the validator returns or raises GGUFFormatError, nothing else."""
    path = tmp_path / "case.gguf"
    base = corpus_base.read_bytes()
    outcomes: Counter[str] = Counter()
    for case in corpus_cases:
        path.write_bytes(apply(base, case.ops))
        try:
            llamakit.validate_gguf(path)
        except llamakit.GGUFFormatError as exc:
            assert exc.field and exc.offset >= 0 and f"at byte {exc.offset}" in str(exc)
            outcomes["rejected"] += 1
        else:
            outcomes["passed"] += 1
    assert outcomes["rejected"] >= 300


def test_no_corpus_file_crashes_a_load(corpus_base: Path, corpus_cases: list[Case]) -> None:
    """No corpus file kills its subprocess; broken ones raise ModelLoadError, others load."""
    outcomes = run_cases(corpus_base, corpus_cases, batch=100)
    assert set(outcomes) == {c.id for c in corpus_cases}
    crashed = {i: o["stderr"][-300:] for i, o in outcomes.items() if o["outcome"] == "crash"}
    assert crashed == {}
    untyped = {i: o["type"] for i, o in outcomes.items() if o["outcome"] == "untyped"}
    assert untyped == {}
    accepted = [c.id for c in corpus_cases if c.expect == "reject"
                and not (outcomes[c.id]["outcome"] == "error"
                         and outcomes[c.id]["model_load_error"])]
    assert accepted == []


# Files on which the pinned llama.cpp aborts the process when it loads them unchecked
# (``python tests/hardening/gguf_corpus.py`` lists all of them).
_ABORTS_LLAMA_CPP = ["block_count=0", "block_count=513", "duplicate-token-0",
                     "empty-token-clash", "rope-scaling-type", "hparam-llama.expert_count=2000",
                     "hparam-llama.nextn_predict_layers=9", "experts-groups", "alignment=16",
                     "alignment=1"]


@pytest.mark.parametrize("case_id", _ABORTS_LLAMA_CPP)
def test_files_that_abort_llama_cpp_are_rejected_by_the_validator(
        corpus_base: Path, corpus_cases: list[Case], case_id: str, tmp_path: Path) -> None:
    """The validator stops each file on which llama.cpp would assert, naming the field."""
    case = next(c for c in corpus_cases if c.id == case_id)
    path = tmp_path / "case.gguf"
    path.write_bytes(apply(corpus_base.read_bytes(), case.ops))
    with pytest.raises(llamakit.GGUFFormatError, match="abort") as info:
        llamakit.validate_gguf(path)
    assert info.value.field.startswith(("kv[", "tensor["))
