"""Saving and restoring context state: identical continuations, atomic files, refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import llamakit

PROMPT = "The quick brown fox jumps over the lazy dog"


def _continue(ctx: llamakit.Context) -> list[int]:
    """Greedy continuation of what the context holds (the last prompt token is re-fed)."""
    return ctx.generate(ctx._past, max_new_tokens=8, temperature=0).tokens


def test_state_round_trip_continues_identically(model: llamakit.Model, tmp_path: Path) -> None:
    """A saved state, loaded into a fresh context, gives the same continuation."""
    with model.new_context(n_ctx=128) as ctx:
        ctx.generate(PROMPT, max_new_tokens=4, temperature=0)
        ctx.save_state(tmp_path / "s.state")
        blob = ctx.state_bytes()
        expected = _continue(ctx)
    with model.new_context(n_ctx=128) as fresh:
        fresh.load_state(tmp_path / "s.state")
        assert fresh._past and fresh.kv.seq_pos_max(0) == len(fresh._past) - 1
        assert _continue(fresh) == expected
    with model.new_context(n_ctx=128) as fresh:
        fresh.set_state(blob)
        held = list(fresh._past)
        result = fresh.generate(held, max_new_tokens=8, temperature=0)
        assert result.tokens == expected
        assert result.timings.prompt_tokens_cached == len(held) - 1


def test_sequence_state_round_trip(model: llamakit.Model, tmp_path: Path) -> None:
    """A sequence state restores into sequence 0 of another context."""
    with model.new_context(n_ctx=128) as ctx:
        ctx.generate(PROMPT, max_new_tokens=2, temperature=0)
        ctx.save_seq_state(tmp_path / "seq.state", 0)
        expected = _continue(ctx)
    with model.new_context(n_ctx=128) as fresh:
        fresh.load_seq_state(tmp_path / "seq.state", 0)
        assert _continue(fresh) == expected


def test_failed_write_leaves_previous_file(model: llamakit.Model, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while writing keeps the previous state file byte for byte, and no temp."""
    target = tmp_path / "s.state"
    with model.new_context(n_ctx=128) as ctx:
        ctx.generate("Hello", max_new_tokens=2, temperature=0)
        ctx.save_state(target)
        before = target.read_bytes()
        ctx.generate(PROMPT, max_new_tokens=2, temperature=0)

        def failing_fsync(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(OSError, match="No space"):
            ctx.save_state(target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.state"]


def test_state_from_another_model_is_refused(model: llamakit.Model, tiny_bpe_model_path: Path,
                                             tmp_path: Path) -> None:
    """A state saved from one model raises StateError on another, leaving it unchanged."""
    with model.new_context(n_ctx=128) as ctx:
        ctx.generate(PROMPT, max_new_tokens=2, temperature=0)
        ctx.save_state(tmp_path / "s.state")
    with llamakit.load_model(tiny_bpe_model_path, backend="cpu") as other, \
            other.new_context(n_ctx=128) as octx:
        octx.generate("Hello", max_new_tokens=3, temperature=0)
        before = octx.state_bytes()
        with pytest.raises(llamakit.StateError, match="another model"):
            octx.load_state(tmp_path / "s.state")
        assert octx.state_bytes() == before


@pytest.mark.parametrize("damage", ["truncate-header", "truncate-payload", "flip-payload",
                                    "magic", "empty"])
def test_damaged_state_is_refused_and_context_unchanged(model: llamakit.Model, tmp_path: Path,
                                                        damage: str) -> None:
    """Truncated or corrupt state raises StateError; the context continues as before."""
    with model.new_context(n_ctx=128) as ctx:
        ctx.generate(PROMPT, max_new_tokens=2, temperature=0)
        good = ctx.state_bytes()
    blob = bytearray(good)
    if damage == "truncate-header":
        blob = blob[:20]
    elif damage == "truncate-payload":
        blob = blob[:len(blob) - 100]
    elif damage == "flip-payload":
        blob[-len(blob) // 3] ^= 0xFF
    elif damage == "magic":
        blob[:4] = b"XXXX"
    else:
        blob = bytearray()
    with model.new_context(n_ctx=128) as ctx:
        ctx.generate("Hello there", max_new_tokens=2, temperature=0)
        before = ctx.state_bytes()
        with pytest.raises(llamakit.StateError):
            ctx.set_state(bytes(blob))
        assert ctx.state_bytes() == before
        after_failure = _continue(ctx)
    with model.new_context(n_ctx=128) as twin:
        twin.set_state(before)
        assert _continue(twin) == after_failure


def test_missing_state_file_raises(ctx: llamakit.Context, tmp_path: Path) -> None:
    """Loading a file that does not exist is StateError; saving into a missing folder too."""
    with pytest.raises(llamakit.StateError):
        ctx.load_state(tmp_path / "none.state")
    with pytest.raises(llamakit.StateError, match="does not exist"):
        ctx.save_state(tmp_path / "no" / "such" / "folder.state")


def test_payload_llama_cpp_rejects_restores_previous_state(model: llamakit.Model) -> None:
    """A well-formed container around a payload llama.cpp cannot read leaves the context
    as it was (llama.cpp may have half-applied it; the previous state is put back)."""
    with model.new_context(n_ctx=128) as ctx:
        ctx.generate(PROMPT, max_new_tokens=2, temperature=0)
        before = ctx.state_bytes()
        real = ctx._unpack(before, "context")[1]
        for payload in (b"\x00" * 64, bytes(real)[: len(real) // 2]):
            bogus = ctx._pack("context", None, payload, [])
            with pytest.raises(llamakit.StateError, match="could not restore"):
                ctx.set_state(bogus)
            assert ctx.state_bytes() == before
