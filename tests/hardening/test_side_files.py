"""Class 4 of issue 21: LoRA adapters and imatrix files go through the GGUF validator,
including the value types of the keys llama.cpp reads with asserting typed getters."""

from __future__ import annotations

from pathlib import Path

import pytest
from attacks import Attack, failures, run_attacks

import llamakit
from llamakit._gguf.side_files import TYPED_KEYS, validate_side_file

# Writes an adapter for the tiny model with one change; ``extra`` picks it.
_WRITE = '''
import gguf, numpy as np
kind, change = extra
w = gguf.GGUFWriter(str(tmp / "a.gguf"), "llama")
values = {"general.type": "adapter", "adapter.type": "lora", "adapter.lora.alpha": 8.0}
if kind == "kv":
    values.pop(change[0], None)
for key, value in values.items():
    (w.add_string if isinstance(value, str) else w.add_float32)(key, value)
if kind == "kv":
    key, vtype, value = change
    {"u32": w.add_uint32, "str": w.add_string, "f32": w.add_float32}[vtype](key, value)
dtype = np.int32 if kind == "int-tensors" else np.float32
for layer in range(2):
    name = f"blk.{layer}.attn_q.weight"
    w.add_tensor(name + ".lora_a", np.ones((4, 64), dtype=dtype))
    w.add_tensor(name + ".lora_b", np.ones((64, 4), dtype=dtype))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
adapter = model().load_lora(tmp / "a.gguf")
with model().new_context(n_ctx=32, n_threads=1) as ctx:
    ctx.apply_lora(adapter)
    ctx.generate("hi", max_new_tokens=2)
'''


def _attack(case_id: str, extra: list[object], expect: tuple[str, ...]) -> Attack:
    return Attack(case_id, f"extra = {extra!r}\n" + _WRITE, expect)


_LORA = ("LoraError", "ValueError")
ATTACKS = [
    _attack("lora-general.type-u32", ["kv", ["general.type", "u32", 7]], _LORA),
    _attack("lora-adapter.type-u32", ["kv", ["adapter.type", "u32", 7]], _LORA),
    _attack("lora-alpha-string", ["kv", ["adapter.lora.alpha", "str", "eight"]], _LORA),
    _attack("lora-alpha-u32", ["kv", ["adapter.lora.alpha", "u32", 8]], _LORA),
    _attack("lora-integer-tensors", ["int-tensors", None], _LORA),
    _attack("lora-valid", ["valid", None], ("ok",)),
]


def test_side_file_attacks(tiny_model_path: Path, tmp_path: Path) -> None:
    """No adapter crashes the process; each broken one is a LoraError naming the field."""
    results = run_attacks(ATTACKS, tiny_model_path, tmp_path)
    assert failures(ATTACKS, results) == {}
    assert "general.type" in results["lora-general.type-u32"]["message"]
    assert "i32" in results["lora-integer-tensors"]["message"]


def test_imatrix_with_wrong_key_types_is_refused(tmp_path: Path) -> None:
    """An imatrix whose chunk_count is a string is a QuantizeError from the validator."""
    import gguf
    import numpy as np

    path = tmp_path / "imatrix.gguf"
    writer = gguf.GGUFWriter(str(path), "imatrix")
    writer.add_string("imatrix.chunk_count", "many")
    writer.add_tensor("blk.0.attn_q.weight.in_sum2", np.ones(64, dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight.counts", np.ones(1, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(llamakit.GGUFFormatError, match="imatrix.chunk_count must be a u32"):
        validate_side_file(str(path), "imatrix")
    from llamakit._quantize.imatrix import load_imatrix

    with pytest.raises(llamakit.QuantizeError, match="chunk_count"):
        load_imatrix(path)


def test_every_typed_key_of_a_side_file_has_a_type() -> None:
    """The table names the keys of the readers in the pinned tree."""
    assert set(TYPED_KEYS) == {"lora", "imatrix"}
    assert "adapter.lora.alpha" in TYPED_KEYS["lora"]
