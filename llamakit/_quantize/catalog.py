"""The quantization types the pinned llama.cpp offers, and resolving names to them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .._errors import QuantizeError
from .._native.lib import NativeLib
from .._native.quantize import GgmlType, ftype_description, ftypes, ggml_types

__all__ = ["COPY", "QuantizationType", "catalog", "resolve_ftype", "resolve_ggml_type"]

# llama_ftype_get_default_type (src/llama-quant.cpp): the main ggml type of each file type
# llama.cpp can quantize to; its C++ linkage keeps it out of reach of C, so it is mirrored
# here and tests/quantize compares the two. A file type missing here (NVFP4) is one the
# quantizer rejects.
DEFAULT_TYPES: Mapping[str, str] = {
    "MOSTLY_Q4_0": "q4_0", "MOSTLY_Q4_1": "q4_1", "MOSTLY_Q5_0": "q5_0",
    "MOSTLY_Q5_1": "q5_1", "MOSTLY_Q8_0": "q8_0", "MOSTLY_F16": "f16", "MOSTLY_BF16": "bf16",
    "ALL_F32": "f32", "MOSTLY_Q1_0": "q1_0", "MOSTLY_Q2_0": "q2_0",
    "MOSTLY_MXFP4_MOE": "mxfp4",
    "MOSTLY_Q2_K_S": "q2_K", "MOSTLY_Q2_K": "q2_K", "MOSTLY_IQ3_XS": "iq3_s",
    "MOSTLY_Q3_K_S": "q3_K", "MOSTLY_Q3_K_M": "q3_K", "MOSTLY_Q3_K_L": "q3_K",
    "MOSTLY_Q4_K_S": "q4_K", "MOSTLY_Q4_K_M": "q4_K", "MOSTLY_Q5_K_S": "q5_K",
    "MOSTLY_Q5_K_M": "q5_K", "MOSTLY_Q6_K": "q6_K", "MOSTLY_TQ1_0": "tq1_0",
    "MOSTLY_TQ2_0": "tq2_0", "MOSTLY_IQ2_XXS": "iq2_xxs", "MOSTLY_IQ2_XS": "iq2_xs",
    "MOSTLY_IQ2_S": "iq2_xs", "MOSTLY_IQ2_M": "iq2_s", "MOSTLY_IQ3_XXS": "iq3_xxs",
    "MOSTLY_IQ1_S": "iq1_s", "MOSTLY_IQ1_M": "iq1_m", "MOSTLY_IQ4_NL": "iq4_nl",
    "MOSTLY_IQ4_XS": "iq4_xs", "MOSTLY_IQ3_S": "iq3_s", "MOSTLY_IQ3_M": "iq3_s",
}
# File types whose mix gives ordinary tensors a type llama.cpp will not produce without an
# importance matrix (tensor_requires_imatrix, llama_tensor_get_type_impl).
_NEEDS_IMATRIX = frozenset({"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS",
                            "IQ1_S", "IQ1_M", "Q2_K_S"})
# llama-quantize's shorthands (tools/quantize/quantize.cpp, QUANT_OPTIONS).
ALIASES: Mapping[str, str] = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}
COPY = "COPY"
"""llama-quantize's pseudo type: copy every tensor unchanged (``only_copy``)."""


@dataclass(frozen=True)
class QuantizationType:
    """One file type ``llamakit.quantize`` can produce."""

    name: str
    """What ``quantize(..., ftype=...)`` takes: ``"Q4_K_M"`` (case does not matter)."""
    ftype: int
    """The ``llama_ftype`` value written to ``general.file_type``."""
    ggml_type: str
    """The main ggml tensor type; mixes (``_S``/``_M``/``_L``) give some tensors others."""
    bits_per_weight: float
    """Bits per weight of ``ggml_type``, from ggml's type traits (block bytes over block
    elements). A whole file averages a little more: mixes, F32 norms, metadata."""
    description: str
    """``llama_ftype_name``: ``"Q4_K - Medium"``."""
    requires_imatrix: bool
    """llama.cpp refuses it without ``imatrix=`` (for rows that fit its blocks)."""


def _public_name(enum_name: str) -> str:
    return enum_name.removeprefix("MOSTLY_").removeprefix("ALL_")


def catalog(native: NativeLib) -> dict[str, QuantizationType]:
    """Every file type of this variant's quantizer by public name, in ``llama_ftype`` order."""
    types = ggml_types(native)
    found = []
    for enum_name, value in ftypes(native).items():
        type_name = DEFAULT_TYPES.get(enum_name)
        if type_name is None:
            continue
        ggml = types[type_name]
        name = _public_name(enum_name)
        found.append(QuantizationType(
            name=name, ftype=value, ggml_type=type_name,
            bits_per_weight=round(ggml.bits_per_weight, 4),
            description=ftype_description(native, value), requires_imatrix=name in _NEEDS_IMATRIX))
    return {t.name: t for t in sorted(found, key=lambda t: t.ftype)}


def resolve_ftype(native: NativeLib, name: object) -> QuantizationType | None:
    """The type called ``name`` (any case, aliases too); None means ``COPY``."""
    if not isinstance(name, str):
        raise QuantizeError(f"ftype must be a type name such as 'Q4_K_M', got {name!r}")
    key = name.strip().upper()
    if key == COPY:
        return None
    known = catalog(native)
    found = known.get(ALIASES.get(key, key))
    if found is None:
        raise QuantizeError(
            f"unknown quantization type {name!r}; llama.cpp offers "
            f"{', '.join(known)} (and {', '.join(ALIASES)}, {COPY}); "
            "see llamakit.quantization_types()")
    return found


def resolve_ggml_type(native: NativeLib, name: object, what: str) -> GgmlType:
    """The ggml tensor type ``name`` (any case: ``"q8_0"``, ``"Q4_K"``) as a target."""
    types = ggml_types(native)
    by_lower = {t.lower(): found for t, found in types.items()}
    found = by_lower.get(name.strip().lower()) if isinstance(name, str) else None
    if found is None or not found.can_quantize:
        targets = ", ".join(t for t, g in types.items() if g.can_quantize)
        raise QuantizeError(f"{what}: {name!r} is not a ggml type llama.cpp can quantize to; "
                            f"use one of {targets}")
    return found
