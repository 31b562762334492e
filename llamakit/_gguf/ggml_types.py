"""ggml's tensor type table and limits, as the pinned llama.cpp defines them.

Copied from ``ggml/include/ggml.h`` (``enum ggml_type``, ``GGML_MAX_DIMS``,
``GGML_MAX_NAME``) and ``ggml/src/ggml.c`` (``type_traits``: block size and bytes per
block) of the pinned tree, so that a file can be checked before any native code runs.
``tests/hardening/test_gguf_validator.py`` compares the table with the compiled library;
a new pin that adds or changes a type fails that test until the table is updated.
"""

from __future__ import annotations

from typing import Final, NamedTuple

__all__ = ["GGML_MAX_DIMS", "GGML_MAX_NAME", "GGML_TYPE_COUNT", "GGML_TYPES", "GgmlTypeInfo"]

GGML_MAX_DIMS: Final = 4
GGML_MAX_NAME: Final = 64


class GgmlTypeInfo(NamedTuple):
    """``ggml_type_name``, ``ggml_blck_size`` and ``ggml_type_size`` of one type id."""

    name: str
    blck_size: int
    type_size: int


# Removed ids keep their slot with a zero block size, as in ggml.c: gguf.cpp rejects them.
_REMOVED = GgmlTypeInfo("removed", 0, 0)

GGML_TYPES: Final[tuple[GgmlTypeInfo, ...]] = (
    GgmlTypeInfo("f32", 1, 4),          # 0
    GgmlTypeInfo("f16", 1, 2),          # 1
    GgmlTypeInfo("q4_0", 32, 18),       # 2
    GgmlTypeInfo("q4_1", 32, 20),       # 3
    _REMOVED,                           # 4  Q4_2
    _REMOVED,                           # 5  Q4_3
    GgmlTypeInfo("q5_0", 32, 22),       # 6
    GgmlTypeInfo("q5_1", 32, 24),       # 7
    GgmlTypeInfo("q8_0", 32, 34),       # 8
    GgmlTypeInfo("q8_1", 32, 36),       # 9
    GgmlTypeInfo("q2_K", 256, 84),      # 10
    GgmlTypeInfo("q3_K", 256, 110),     # 11
    GgmlTypeInfo("q4_K", 256, 144),     # 12
    GgmlTypeInfo("q5_K", 256, 176),     # 13
    GgmlTypeInfo("q6_K", 256, 210),     # 14
    GgmlTypeInfo("q8_K", 256, 292),     # 15
    GgmlTypeInfo("iq2_xxs", 256, 66),   # 16
    GgmlTypeInfo("iq2_xs", 256, 74),    # 17
    GgmlTypeInfo("iq3_xxs", 256, 98),   # 18
    GgmlTypeInfo("iq1_s", 256, 50),     # 19
    GgmlTypeInfo("iq4_nl", 32, 18),     # 20
    GgmlTypeInfo("iq3_s", 256, 110),    # 21
    GgmlTypeInfo("iq2_s", 256, 82),     # 22
    GgmlTypeInfo("iq4_xs", 256, 136),   # 23
    GgmlTypeInfo("i8", 1, 1),           # 24
    GgmlTypeInfo("i16", 1, 2),          # 25
    GgmlTypeInfo("i32", 1, 4),          # 26
    GgmlTypeInfo("i64", 1, 8),          # 27
    GgmlTypeInfo("f64", 1, 8),          # 28
    GgmlTypeInfo("iq1_m", 256, 56),     # 29
    GgmlTypeInfo("bf16", 1, 2),         # 30
    _REMOVED,                           # 31 Q4_0_4_4
    _REMOVED,                           # 32 Q4_0_4_8
    _REMOVED,                           # 33 Q4_0_8_8
    GgmlTypeInfo("tq1_0", 256, 54),     # 34
    GgmlTypeInfo("tq2_0", 256, 66),     # 35
    _REMOVED,                           # 36 IQ4_NL_4_4
    _REMOVED,                           # 37 IQ4_NL_4_8
    _REMOVED,                           # 38 IQ4_NL_8_8
    GgmlTypeInfo("mxfp4", 32, 17),      # 39
    GgmlTypeInfo("nvfp4", 64, 36),      # 40
    GgmlTypeInfo("q1_0", 128, 18),      # 41
    GgmlTypeInfo("q2_0", 64, 18),       # 42
)

GGML_TYPE_COUNT: Final = len(GGML_TYPES)
