"""Well-formed GGUF values on which llama.cpp aborts the process instead of failing.

llama.cpp turns most bad metadata into a clean load failure (an exception that
``llama_model_load_from_file`` reports as NULL), but a few values reach a ``GGML_ASSERT``
and end the process. Each check here names the assert of the pinned tree it stands in
for; a check only looks at a value of the type llama.cpp reads (a value of another type
makes llama.cpp fail cleanly before the assert).

- ``llama_vocab::impl::load``: ``GGML_ASSERT(id_to_token.size() == token_to_id.size())``
  -- two tokens with the same text (an empty one counts as ``[EMPTY_<id>]``).
- ``llama_model_base::load_hparams``: ``block_count`` in ``1..LLAMA_MAX_LAYERS``,
  ``nextn_predict_layers <= block_count``, the expert counts, and a known
  ``rope.scaling.type``.
- ``ggml_mul_mat`` (first graph build): ``GGML_ASSERT(ggml_can_mul_mat(k, q))`` -- a
  ``head_count`` that ``head_count_kv`` does not divide.
- ``llama_model_loader``: ``split.no`` of every further shard read with
  ``gguf_get_val_u16``, which asserts the type.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from .._errors import GGUFFormatError
from .reader import Cursor
from .validate import ARRAY, STRING, TYPE_NAMES, KeyValue, Parsed, check_file

__all__ = ["check_hazards", "check_shards"]

# llama-hparams.h
LLAMA_MAX_LAYERS = 512
LLAMA_MAX_EXPERTS = 1024
# LLAMA_ROPE_SCALING_TYPES (llama-model.cpp)
ROPE_SCALING_TYPES = frozenset({"none", "linear", "yarn", "longrope"})
# load_hparams resets the expert counts of these architectures instead of asserting.
_EXPERT_RESET_ARCHS = frozenset({"hunyuan-dense", "hunyuan_vl"})
_BOOL, _U16, _U32, _I32 = 7, 2, 4, 5
_U64 = struct.Struct("<Q").unpack_from


def _fail(cur: Cursor, kv: KeyValue, reason: str) -> None:
    cur.fail(kv.field, kv.offset, f"{reason}; llama.cpp would abort the process on it")


def _item_offset(cur: Cursor, kv: KeyValue, index: int) -> int:
    """Byte offset of item ``index`` of a (valid) string array."""
    pos = kv.offset
    for _ in range(index):
        at = cur.window(pos, 8, kv.field)
        pos += 8 + _U64(cur.win, at)[0]
    return pos


def _check_tokens(cur: Cursor, parsed: Parsed) -> None:
    tokens = parsed.tokens
    kv = parsed.kvs.get(b"tokenizer.ggml.tokens")
    if not tokens or kv is None:
        return
    unique = set(tokens)
    if len(unique) == len(tokens) and b"" not in unique:
        return
    seen: dict[bytes, int] = {}
    for index, word in enumerate(tokens):
        if not word:
            word = b"[EMPTY_%d]" % index
        first = seen.setdefault(word, index)
        if first != index:
            cur.fail(f"{kv.field}[{index}]", _item_offset(cur, kv, index),
                     f"token {index} has the same text as token {first} "
                     f"({word.decode('utf-8', 'replace')!r}); llama.cpp would abort the "
                     "process on it")


def _used_experts(cur: Cursor, kv: KeyValue, n_layer: int) -> int | None:
    """``n_expert_used_max()`` from a scalar or per-layer array; None where llama.cpp
    fails cleanly reading it (wrong type or length)."""
    if kv.type == _U32:
        assert isinstance(kv.value, int)
        return kv.value
    if kv.type != ARRAY or kv.item_type not in (_BOOL, _U32, _I32) or kv.count != n_layer:
        return None
    size = 1 if kv.item_type == _BOOL else 4
    at = cur.window(kv.offset, size * kv.count, kv.field)
    raw = cur.win[at:at + size * kv.count]
    if kv.item_type == _BOOL:
        return max((1 if b else 0 for b in raw), default=0)
    return max(struct.unpack(f"<{kv.count}I", raw), default=0)


def _check_experts(cur: Cursor, parsed: Parsed, prefix: str, n_layer: int) -> None:
    keys = ("expert_count", "expert_used_count", "expert_group_count",
            "expert_group_used_count")
    found = {k: parsed.kvs.get(f"{prefix}{k}".encode()) for k in keys}
    values: dict[str, int] = {}
    for key, kv in found.items():
        if kv is None:
            values[key] = 0
        elif key == "expert_used_count":
            used = _used_experts(cur, kv, n_layer)
            if used is None:
                return
            values[key] = used
        elif kv.type != _U32:
            return
        else:
            assert isinstance(kv.value, int)
            values[key] = kv.value
    n_expert, used = values["expert_count"], values["expert_used_count"]
    groups, group_used = values["expert_group_count"], values["expert_group_used_count"]
    blame = next((kv for kv in found.values() if kv is not None), None)
    if blame is None:
        return
    problem = None
    if n_expert > LLAMA_MAX_EXPERTS:
        problem = f"expert_count {n_expert} exceeds llama.cpp's limit of {LLAMA_MAX_EXPERTS}"
    elif used > n_expert:
        problem = f"expert_used_count {used} exceeds expert_count {n_expert}"
    elif n_expert > 0:
        if used == 0:
            problem = "expert_used_count is 0 with experts present"
        elif groups >= n_expert:
            problem = f"expert_group_count {groups} is not below expert_count {n_expert}"
        elif groups > 1 and (n_expert % groups or group_used == 0 or group_used >= groups):
            problem = (f"expert groups do not divide the experts ({n_expert} experts, {groups} "
                       f"groups, {group_used} used)")
    elif groups != 0:
        problem = f"expert_group_count is {groups} without experts"
    if problem is not None:
        _fail(cur, blame, problem)


def _per_layer(cur: Cursor, kv: KeyValue, n_layer: int) -> list[int] | None:
    """A u32 scalar or per-layer u32/i32 array as one value per layer; None where
    llama.cpp fails cleanly reading it (wrong type or length)."""
    if kv.type == _U32:
        assert isinstance(kv.value, int)
        return [kv.value] * n_layer
    if kv.type != ARRAY or kv.item_type not in (_U32, _I32) or kv.count != n_layer:
        return None
    at = cur.window(kv.offset, 4 * kv.count, kv.field)
    return list(struct.unpack(f"<{kv.count}I", cur.win[at:at + 4 * kv.count]))


def _check_heads(cur: Cursor, parsed: Parsed, prefix: str, n_layer: int) -> None:
    # Tensor shapes follow head_count_kv, so a count that does not divide head_count
    # loads fine and then fails GGML_ASSERT(ggml_can_mul_mat(k, q)) (ggml.c) while the
    # first context builds its graph. A layer without attention has 0 KV heads.
    head = parsed.kvs.get(f"{prefix}attention.head_count".encode())
    head_kv = parsed.kvs.get(f"{prefix}attention.head_count_kv".encode())
    if head is None or head_kv is None:
        return
    heads, heads_kv = _per_layer(cur, head, n_layer), _per_layer(cur, head_kv, n_layer)
    if heads is None or heads_kv is None:
        return
    for layer, (n_head, n_kv) in enumerate(zip(heads, heads_kv, strict=True)):
        if n_kv and n_head % n_kv:
            _fail(cur, head_kv, f"layer {layer} has {n_head} attention heads, not a multiple "
                                f"of its {n_kv} key/value heads")


def _check_hparams(cur: Cursor, parsed: Parsed, arch: str) -> None:
    prefix = f"{arch}."
    block_count = parsed.kvs.get(f"{prefix}block_count".encode())
    if block_count is not None and block_count.type == _U32:
        assert isinstance(block_count.value, int)
        n_layer = block_count.value
        if not 1 <= n_layer <= LLAMA_MAX_LAYERS:
            _fail(cur, block_count, f"block_count {n_layer} is outside 1..{LLAMA_MAX_LAYERS}")
        nextn = parsed.kvs.get(f"{prefix}nextn_predict_layers".encode())
        if nextn is not None and nextn.type == _U32:
            assert isinstance(nextn.value, int)
            if nextn.value > n_layer:
                _fail(cur, nextn, f"nextn_predict_layers {nextn.value} exceeds block_count "
                                  f"{n_layer}")
        if arch not in _EXPERT_RESET_ARCHS:
            _check_experts(cur, parsed, prefix, n_layer)
        if 1 <= n_layer <= LLAMA_MAX_LAYERS:
            _check_heads(cur, parsed, prefix, n_layer)
    rope = parsed.kvs.get(f"{prefix}rope.scaling.type".encode())
    if rope is not None and rope.type == STRING:
        name = rope.value.decode("utf-8", "replace") if isinstance(rope.value, bytes) else None
        if name not in ROPE_SCALING_TYPES:
            _fail(cur, rope, f"unknown rope scaling type {name!r} (llama.cpp knows "
                             f"{', '.join(sorted(ROPE_SCALING_TYPES))})")


def check_hazards(cur: Cursor, parsed: Parsed) -> None:
    """Reject values of a structurally valid file that make llama.cpp abort."""
    _check_tokens(cur, parsed)
    arch = parsed.string("general.architecture")
    if arch:
        _check_hparams(cur, parsed, arch)


def check_shards(parsed: Parsed) -> list[Path]:
    """Check the further files of a split model the way llama.cpp will open them; stop
    where llama.cpp would fail cleanly (a missing file, a wrong index)."""
    count = parsed.kvs.get(b"split.count")
    number = parsed.kvs.get(b"split.no")
    if count is None or count.type != _U16 or not isinstance(count.value, int) \
            or count.value <= 1 or number is None or number.type != _U16 or number.value != 0:
        return []
    postfix = f"-00001-of-{count.value:05d}.gguf"
    path = parsed.path
    if len(path) <= len(postfix) or not path.endswith(postfix):
        return []
    prefix = path[:-len(postfix)]
    checked = []
    for index in range(1, count.value):
        shard = f"{prefix}-{index + 1:05d}-of-{count.value:05d}.gguf"
        if not os.path.isfile(shard):
            break
        found = check_file(shard)
        kv = found.kvs.get(b"split.no")
        if kv is None:
            break
        if kv.type != _U16:
            raise GGUFFormatError(f"split.no must be a u16, not {TYPE_NAMES[kv.type]}; "
                                  "llama.cpp would abort the process on it", path=shard,
                                  field=kv.field, offset=kv.offset)
        checked.append(Path(shard))
        if kv.value != index:
            break
    return checked
