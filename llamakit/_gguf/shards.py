"""The shards of a split model (``name-00001-of-00003.gguf``, as llama.cpp's gguf-split
writes them), checked before llama.cpp opens them.

llama.cpp's loader, given the first shard, derives the others' names from it and fails
(cleanly, but without saying which file) on a missing shard, a wrong ``split.no``, a
tensor found twice or a tensor count that differs from ``split.tensors.count``; it asserts
on a ``split.no`` that is not a u16. Each of these is a :class:`ShardError` (or a
``GGUFFormatError``) here that names the shard.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .._errors import GGUFFormatError, ShardError
from .validate import TYPE_NAMES, Parsed, check_file

__all__ = ["SHARD_NAME", "check_shards", "shard_paths"]

_U16, _U32, _I32 = 2, 4, 5
#: llama.cpp's shard names (``llama_split_path``): ``<prefix>-%05d-of-%05d.gguf``.
SHARD_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


def _int(parsed: Parsed, key: str, types: tuple[int, ...]) -> int | None:
    kv = parsed.kvs.get(key.encode())
    if kv is None or kv.type not in types or not isinstance(kv.value, int):
        return None
    return kv.value


def shard_paths(first: str, count: int) -> list[str]:
    """Every shard's path given the first one's (which must follow llama.cpp's naming)."""
    postfix = f"-00001-of-{count:05d}.gguf"
    prefix = first[:-len(postfix)]
    return [f"{prefix}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


def check_shards(parsed: Parsed) -> list[Path]:
    """Check every further shard of the split model whose first file is ``parsed``, the
    way llama.cpp will open them; returns their paths (empty for a single-file model)."""
    count = _int(parsed, "split.count", (_U16,))
    if count is None or count <= 1:
        return []
    number = _int(parsed, "split.no", (_U16,))
    name = os.path.basename(parsed.path)
    match = SHARD_NAME.match(name)
    if number != 0:
        first = (f"{match['prefix']}-00001-of-{count:05d}.gguf" if match
                 else f"the file named ...-00001-of-{count:05d}.gguf")
        raise ShardError(f"{parsed.path} is shard {(number or 0) + 1} of a {count}-file split "
                         f"model; pass the first shard, {first}", path=parsed.path)
    if match is None or int(match["no"]) != 1 or int(match["count"]) != count:
        raise ShardError(
            f"{parsed.path} is the first shard of a {count}-file split model, but its name "
            f"does not end in -00001-of-{count:05d}.gguf, the name llama.cpp finds the other "
            "shards by; rename the shards as llama-gguf-split names them", path=parsed.path)
    names = {t.name: name for t in parsed.tensors}
    n_tensors = len(parsed.tensors)
    checked: list[Path] = []
    for index, shard in enumerate(shard_paths(parsed.path, count)[1:], start=1):
        if not os.path.isfile(shard):
            raise ShardError(f"shard {os.path.basename(shard)} is missing ({index + 1} of "
                             f"{count} of the split model {name}; looked for {shard})",
                             path=shard)
        found = check_file(shard)
        kv = found.kvs.get(b"split.no")
        if kv is None:
            raise ShardError(f"{shard} has no split.no key: it is not a shard of a split model",
                             path=shard)
        if kv.type != _U16:
            raise GGUFFormatError(f"split.no must be a u16, not {TYPE_NAMES[kv.type]}; "
                                  "llama.cpp would abort the process on it", path=shard,
                                  field=kv.field, offset=kv.offset)
        if kv.value != index:
            said = kv.value + 1 if isinstance(kv.value, int) else "?"
            raise ShardError(f"{shard} says it is shard {said}, but its name says "
                             f"shard {index + 1}; it belongs to another split", path=shard)
        other_count = _int(found, "split.count", (_U16,))
        if other_count is not None and other_count != count:
            raise ShardError(f"{shard} belongs to a {other_count}-file split, not to the "
                             f"{count}-file split of {name}", path=shard)
        for tensor in found.tensors:
            if tensor.name in names:
                raise ShardError(f"{shard} holds tensor {tensor.name!r}, which "
                                 f"{names[tensor.name]} holds too: the shards belong to "
                                 "different models or splits", path=shard)
            names[tensor.name] = os.path.basename(shard)
        n_tensors += len(found.tensors)
        checked.append(Path(shard))
    expected = _int(parsed, "split.tensors.count", (_U16, _U32, _I32))
    if expected is not None and expected != n_tensors:
        raise ShardError(f"the split model {name} should have {expected} tensors "
                         f"(split.tensors.count) but its {count} shards hold {n_tensors}; a "
                         "shard is from another model or damaged", path=parsed.path)
    return checked
