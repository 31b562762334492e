"""Property-based fuzzing (hypothesis, bounded by example count, derandomized) of the GGUF
validator and of the tokenizer API."""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from gguf_corpus import map_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir, storage_directory

import llamakit

# Hypothesis caches constants and unicode tables in ./.hypothesis, already while this
# module is collected; the suite writes nothing into the working tree, so they go to a
# temporary folder (put back after the module by ``_hypothesis_home``).
_PREVIOUS_HOME = storage_directory(intent_to_write=False).home_directory
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / f"llamakit-hypothesis-{os.getuid()}")

# Reproducible in CI, no example database written into the working tree.
_FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])

@pytest.fixture(scope="module", autouse=True)
def _hypothesis_home() -> Iterator[None]:
    """Put hypothesis's home back once this module is done (see ``_HOME``)."""
    yield
    set_hypothesis_home_dir(_PREVIOUS_HOME)


_EDGES = [0, 1, 2, 7, 8, 31, 32, 63, 64, 255, 2**16, 2**30, 2**31 - 1, 2**31, 2**32 - 1,
          2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1]


def _check(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        summary = llamakit.validate_gguf(path)
    except llamakit.GGUFFormatError as exc:
        assert exc.offset >= 0 and exc.field
    else:
        assert summary.data_offset <= summary.file_size


@pytest.fixture(scope="module")
def header(corpus_base: Path) -> tuple[bytes, list[int]]:
    """The valid file and the offsets of its integer fields (counts, lengths, types,
    dimensions, offsets)."""
    data = corpus_base.read_bytes()
    fmap = map_file(data)
    fields = [8, 16]
    for kv in fmap.kvs:
        fields += [kv.at, kv.type_at, kv.value_at] + ([kv.count_at] if kv.count_at > 0 else [])
    for tensor in fmap.tensors:
        fields += [tensor.at, tensor.n_dims_at, *tensor.ne_at, tensor.type_at, tensor.offset_at]
    return data, fields


@_FUZZ
@given(patches=st.lists(st.tuples(st.integers(0, 2**20), st.binary(min_size=1, max_size=8)),
                        min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 2**20)))
def test_validator_on_random_byte_damage(header: tuple[bytes, list[int]], tmp_path: Path,
                                         patches: list[tuple[int, bytes]],
                                         cut: int | None) -> None:
    """Random overwrites and cuts of a header make the validator return or raise GGUFFormatError."""
    data, fields = header
    out = bytearray(data)
    end = fields[-1] + 16
    for where, raw in patches:
        offset = where % end
        out[offset:offset + len(raw)] = raw
    if cut is not None:
        del out[cut % (len(out) + 1):]
    _check(tmp_path / "fuzz.gguf", bytes(out))


@_FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(_EDGES) | st.integers(
    -(2**63), 2**64 - 1), st.sampled_from([4, 8])), min_size=1, max_size=4))
def test_validator_on_edge_values_in_fields(header: tuple[bytes, list[int]], tmp_path: Path,
                                            edits: list[tuple[int, int, int]]) -> None:
    """Boundary integers in the header's fields make the validator raise only GGUFFormatError."""
    data, fields = header
    out = bytearray(data)
    for pick, value, width in edits:
        offset = fields[pick % len(fields)]
        out[offset:offset + width] = struct.pack("<Q" if width == 8 else "<I",
                                                 value % (1 << (8 * width)))
    _check(tmp_path / "fuzz.gguf", bytes(out))


@settings(max_examples=250, deadline=None, derandomize=True, database=None)
@given(text=st.text(max_size=200) | st.binary(max_size=200),
       add_special=st.booleans(), parse_special=st.booleans())
def test_tokenize_round_trip_on_any_text(model: llamakit.Model, text: str | bytes,
                                         add_special: bool, parse_special: bool) -> None:
    """Any str or bytes tokenizes to in-vocabulary ids that detokenize back to a str."""
    tokens = model.tokenize(text, add_special=add_special, parse_special=parse_special)
    assert all(0 <= t < model.n_vocab for t in tokens)
    assert isinstance(model.detokenize(tokens), str)
    if not add_special and not parse_special and isinstance(text, str) and text.isascii() \
            and text.strip() and "\0" not in text:
        assert model.detokenize(tokens).strip() == text.strip()


@settings(max_examples=250, deadline=None, derandomize=True, database=None)
@given(tokens=st.lists(st.integers(-(2**40), 2**40) | st.integers(-1, 32010), max_size=40),
       remove_special=st.booleans(), unparse_special=st.booleans())
def test_detokenize_and_pieces_on_any_ids(model: llamakit.Model, tokens: list[int],
                                          remove_special: bool, unparse_special: bool) -> None:
    """Any list of integers detokenizes or raises InvalidTokenError; so does each piece."""
    valid = all(0 <= t < model.n_vocab for t in tokens)
    try:
        text = model.detokenize(tokens, remove_special, unparse_special)
    except llamakit.InvalidTokenError:
        assert not valid
    else:
        assert valid and isinstance(text, str)
    for token in tokens[:5]:
        try:
            model.token_to_piece(token, special=unparse_special)
        except llamakit.InvalidTokenError:
            assert not 0 <= token < model.n_vocab
