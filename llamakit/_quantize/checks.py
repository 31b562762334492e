"""Everything ``quantize`` checks before llama.cpp runs.

llama.cpp reports most bad inputs as a failed status, but some reach a ``GGML_ASSERT`` and
abort the process; those are ruled out here:

* a token-embedding or output tensor given a type whose blocks do not divide its rows
  (``token_embedding_type``/``output_tensor_type`` bypass llama.cpp's shape fallback);
* such a tensor given a type that only quantizes with an importance matrix
  (``ggml_quantize_requires_imatrix``) when the imatrix has no entry for it: llama.cpp's
  own imatrix check leaves these two tensors out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from .._errors import ModelLoadError, QuantizeError
from .._gguf import validate_gguf
from .._native.quantize import GgmlType
from .gguf_header import GGUF_MAGIC, GgufHeader, read_header, split_files
from .imatrix import Imatrix
from .plan import QuantizePlan, TensorInfo

__all__ = ["check_destination", "check_plan", "parse_tensor_types", "read_source"]

_TOKEN_EMBD = ("token_embd.weight", "per_layer_token_embd.weight")
_OUTPUT = "output.weight"
# tensor_type_fallback (src/llama-quant.cpp): the type a shape that does not fit falls to.
_FALLBACK = {
    "iq1_s": "iq4_nl", "iq1_m": "iq4_nl", "iq2_xxs": "iq4_nl", "iq2_xs": "iq4_nl",
    "iq2_s": "iq4_nl", "iq3_xxs": "iq4_nl", "iq3_s": "iq4_nl", "iq4_xs": "iq4_nl",
    "q2_0": "q4_0", "q2_K": "q4_0", "q3_K": "q4_0", "tq1_0": "q4_0", "tq2_0": "q4_0",
    "q4_K": "q5_0", "q5_K": "q5_1", "q6_K": "q8_0",
}


def read_source(src: object) -> tuple[Path, list[GgufHeader]]:
    """The source path and the headers of all its shards; ``QuantizeError`` if unusable."""
    if not isinstance(src, (str, os.PathLike)):
        raise QuantizeError(f"src must be a path, got {type(src).__name__}")
    path = Path(os.fspath(src))
    if not path.exists():
        raise QuantizeError(f"source model not found: {path}", path=path)
    if not path.is_file():
        raise QuantizeError(f"source {path} is not a file", path=path)
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise QuantizeError(f"cannot read the source {path}: {exc}", path=path) from exc
    if magic != GGUF_MAGIC:
        raise QuantizeError(f"source {path} is not a GGUF file (it starts with {magic!r}); "
                            "convert it with llama.cpp's convert_hf_to_gguf.py", path=path)
    try:
        # llama.cpp's quantizer opens the source with the model loader, which aborts on some
        # malformed files: the shared validator rejects those first (all shards too).
        validate_gguf(path)
    except ModelLoadError as exc:
        raise QuantizeError(f"source {path} is not a valid GGUF model: {exc}",
                            path=path) from exc
    headers = []
    try:
        first = read_header(path)
        headers.append(first)
        for shard in split_files(first)[1:]:
            if not shard.is_file():
                raise ValueError(f"its shard {shard.name} is missing")
            headers.append(read_header(shard))
    except (OSError, ValueError) as exc:
        raise QuantizeError(f"source {path} is not a valid GGUF model: {exc}",
                            path=path) from exc
    if not any(h.tensors for h in headers):
        raise QuantizeError(f"source {path} holds no tensors (a vocab-only file?)", path=path)
    return path, headers


def _same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):  # hard links, symbolic links, bind mounts
            return True
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_destination(outputs: Iterable[Path], sources: Iterable[Path]) -> None:
    """Each output's folder exists, is writable, and no output is (a link to) a source."""
    sources = list(sources)
    for out in outputs:
        folder = out.parent
        if not folder.is_dir():
            raise QuantizeError(f"destination folder does not exist: {folder}", path=out)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise QuantizeError(f"destination folder is not writable: {folder}", path=out)
        if out.is_dir():
            raise QuantizeError(f"destination {out} is a directory; give a file name",
                                path=out)
        for src in sources:
            if _same_file(out, src):
                raise QuantizeError(f"destination {out} is the source model itself; choose "
                                    "another file name", path=out)


def parse_tensor_types(value: object) -> tuple[tuple[str, str], ...]:
    """``tensor_types`` as ``(pattern, type)`` pairs: from a mapping, pairs or ``"p=t"``."""
    if value is None:
        return ()
    items: Iterable[object]
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (str, bytes)):
        raise QuantizeError("tensor_types is a mapping {pattern: type} or a list of "
                            "(pattern, type) pairs, not a string")
    elif isinstance(value, Iterable):
        items = value
    else:
        raise QuantizeError(f"tensor_types must be a mapping or a list, got {value!r}")
    pairs = []
    for item in items:
        if isinstance(item, str) and "=" in item:
            item = tuple(item.rsplit("=", 1))
        if (not isinstance(item, tuple) or len(item) != 2
                or not all(isinstance(part, str) for part in item)):
            raise QuantizeError(f"tensor_types entry {item!r} is not a (pattern, type) pair")
        pattern, type_name = item
        if not pattern:
            raise QuantizeError("tensor_types has an empty pattern")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise QuantizeError(f"tensor_types pattern {pattern!r} is not a valid regular "
                                f"expression: {exc}") from None
        pairs.append((pattern, type_name))
    return tuple(pairs)


def _n_dims(tensor: TensorInfo) -> int:
    dims = list(tensor.shape)
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    return len(dims)


def _fallback(types: Mapping[str, GgmlType], name: str, ne0: int) -> str | None:
    if ne0 % types[name].blck_size == 0:
        return name
    if name in _FALLBACK:
        fallback = _FALLBACK[name]
        return "f16" if ne0 % types[fallback].blck_size else fallback
    # llama.cpp turns small-block types to F16 and throws for the rest (a clean failure).
    return "f16" if types[name].blck_size <= 32 else None


def _special_target(plan: QuantizePlan, tensor: TensorInfo, default: GgmlType,
                    tied: bool) -> tuple[str | None, bool]:
    """The type llama.cpp gives a token-embedding/output tensor and whether its shape
    fallback applies; None where llama.cpp's own mix decides (always a safe type)."""
    is_output = tensor.name == _OUTPUT
    matches = [t for p, t in plan.tensor_types if re.search(p, tensor.name)]
    if plan.token_embedding_type and not is_output and not (
            tensor.name == "per_layer_token_embd.weight" and matches):
        return plan.token_embedding_type, False
    if plan.output_tensor_type and is_output:
        return plan.output_tensor_type, False
    if not default.is_quantized:
        return None, False
    if matches:
        return matches[0], True
    if plan.pure:
        return default.name, True
    if plan.output_tensor_type and tied and not is_output:
        return plan.output_tensor_type, True
    return None, False


def check_plan(plan: QuantizePlan, default: GgmlType, types: Mapping[str, GgmlType],
               imatrix: Imatrix | None) -> None:
    """Rule out what would make llama.cpp abort (see the module docstring)."""
    names = {t.name for t in plan.tensors}
    tied = _OUTPUT not in names
    for tensor in plan.tensors:
        if tensor.name not in (*_TOKEN_EMBD, _OUTPUT) or _n_dims(tensor) < 2:
            continue
        if tensor.name == _OUTPUT and not plan.quantize_output_tensor:
            continue
        target, fallback = _special_target(plan, tensor, default, tied)
        if target is None:
            continue
        ne0 = tensor.shape[0]
        target_type = types[target]  # plan types are canonical ggml names by now
        if not fallback and ne0 % target_type.blck_size:
            raise QuantizeError(
                f"{tensor.name} has rows of {ne0} values, which do not divide into blocks "
                f"of {target_type.blck_size} of {target_type.name}; choose another type for "
                "it (ggml would abort)")
        final = _fallback(types, target_type.name, ne0) if fallback else target_type.name
        if final is None or not types[final].requires_imatrix:
            continue
        want = ne0 * (tensor.shape[2] if len(tensor.shape) > 2 else 1)
        entry = imatrix.entries.get(tensor.name) if imatrix is not None else None
        if entry is None or entry.size != want:
            raise QuantizeError(
                f"{tensor.name} would be quantized to {final}, which needs importance-matrix "
                f"values for it ({want} of them), and "
                + ("no imatrix was given" if imatrix is None else "the imatrix has none")
                + f"; give {tensor.name} another type (token_embedding_type, "
                "output_tensor_type or tensor_types)")

