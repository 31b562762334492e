"""quantization_types() and the tables mirrored from llama.cpp, checked against its source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import llamakit
from llamakit._backends import resolve_backend
from llamakit._native.quantize import QUANTIZE_CHUNK_TYPES, ftypes, ggml_types
from llamakit._quantize.catalog import ALIASES, DEFAULT_TYPES, resolve_ftype


def _function_body(source: str, signature: str) -> str:
    start = source.index(signature)
    depth, i = 0, source.index("{", start)
    for j in range(i, len(source)):
        depth += {"{": 1, "}": -1}.get(source[j], 0)
        if depth == 0:
            return source[i:j]
    raise AssertionError(signature)


def test_every_llama_ftype_is_declared(llama_cpp_dir: Path) -> None:
    """Each LLAMA_FTYPE_* of llama.h (bar GUESSED) is known to the native module."""
    header = (llama_cpp_dir / "include" / "llama.h").read_text()
    declared = {m.group(1) for m in re.finditer(r"^\s*LLAMA_FTYPE_(\w+)\s*=", header, re.M)}
    assert "MOSTLY_Q4_K_M" in declared
    assert set(ftypes(resolve_backend("cpu"))) == declared - {"GUESSED"}


def test_default_types_match_llama_quant(llama_cpp_dir: Path) -> None:
    """DEFAULT_TYPES is llama_ftype_get_default_type's switch, case for case."""
    source = (llama_cpp_dir / "src" / "llama-quant.cpp").read_text()
    body = _function_body(source, "ggml_type llama_ftype_get_default_type(llama_ftype ftype)")
    found: dict[str, str] = {}
    pending: list[str] = []
    for match in re.finditer(r"case LLAMA_FTYPE_(\w+):\s*(?:return GGML_TYPE_(\w+);)?", body):
        pending.append(match.group(1))
        if match.group(2):
            for name in pending:
                found[name] = match.group(2).lower()
            pending.clear()
    native_types = ggml_types(resolve_backend("cpu"))
    assert {k: v.lower() for k, v in DEFAULT_TYPES.items()} == found
    assert all(v in native_types for v in DEFAULT_TYPES.values())


def test_quantizable_types_match_ggml(llama_cpp_dir: Path) -> None:
    """The target types are exactly those ggml_quantize_chunk has a case for."""
    source = (llama_cpp_dir / "ggml" / "src" / "ggml.c").read_text()
    body = _function_body(source, "size_t ggml_quantize_chunk(")
    cases = {m.group(1).lower() for m in re.finditer(r"case GGML_TYPE_(\w+):", body)}
    assert {t.lower() for t in QUANTIZE_CHUNK_TYPES} == cases


def test_llama_quantize_names_are_accepted(llama_cpp_dir: Path) -> None:
    """Every type name llama-quantize takes (QUANT_OPTIONS) means the same ftype here."""
    source = (llama_cpp_dir / "tools" / "quantize" / "quantize.cpp").read_text()
    options = re.findall(r'\{\s*"(\w+)",\s*LLAMA_FTYPE_(\w+),', source)
    assert len(options) > 30
    native = resolve_backend("cpu")
    values = ftypes(native)
    for name, enum_name in options:
        found = resolve_ftype(native, name.lower())
        if name == "COPY":
            assert found is None
        else:
            assert found is not None and found.ftype == values[enum_name], name


def test_quantization_types_describe_each_type() -> None:
    """Names, llama_ftype values, descriptions and bits per weight from ggml's traits."""
    types = {t.name: t for t in llamakit.quantization_types()}
    assert (types["Q4_0"].ftype, types["Q4_0"].bits_per_weight) == (2, 4.5)
    assert types["Q8_0"].bits_per_weight == 8.5
    assert types["Q4_K_M"].ggml_type == "q4_K" and types["Q4_K_M"].bits_per_weight == 4.5
    assert types["Q6_K"].bits_per_weight == 6.5625
    assert types["Q4_K_M"].description == "Q4_K - Medium"
    assert types["F16"].bits_per_weight == 16.0
    assert types["IQ2_XXS"].requires_imatrix and not types["Q4_K_M"].requires_imatrix
    assert "NVFP4" not in types  # llama.cpp's quantizer rejects it
    assert [t.ftype for t in types.values()] == sorted(t.ftype for t in types.values())


@pytest.mark.parametrize("alias, name", [*ALIASES.items(), ("q4_k_m", "Q4_K_M"),
                                         (" Q8_0 ", "Q8_0"), ("bf16", "BF16")])
def test_aliases_and_case(alias: str, name: str) -> None:
    """llama-quantize's shorthands and any case resolve to the canonical type."""
    found = resolve_ftype(resolve_backend("cpu"), alias)
    assert found is not None and found.name == name


def test_ggml_type_traits() -> None:
    """ggml's traits: live types only, block sizes and imatrix needs."""
    types = ggml_types(resolve_backend("cpu"))
    assert "DEPRECATED" not in types
    assert (types["q4_K"].blck_size, types["q4_K"].type_size) == (256, 144)
    assert (types["q8_0"].blck_size, types["q8_0"].type_size) == (32, 34)
    assert types["q4_K"].row_size(512) == 288
    assert types["iq2_xxs"].requires_imatrix and not types["q4_K"].requires_imatrix
    assert types["q8_1"].is_quantized and not types["q8_1"].can_quantize
    assert types["f16"].can_dequantize and types["q4_0"].can_dequantize
    assert not types["i32"].can_dequantize
