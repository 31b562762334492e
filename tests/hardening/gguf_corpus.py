"""A corpus of malformed GGUF files made from one valid synthetic model, and a runner
that loads each in a subprocess (a crash is a signal there, not the end of the test run).

The structure of the valid file is read here independently of ``llamakit._gguf`` (a few
lines, trusted input), so the corpus does not share a bug with the validator it tests.
Each case is a list of edits of the valid file and an expectation: ``"reject"`` (the file
is broken beyond doubt: loading must raise ``ModelLoadError``) or ``"any"`` (random
damage that may leave a loadable file: loading must not crash and any error is typed).

``python tests/hardening/gguf_corpus.py`` runs the corpus with and without the validator
and prints what llama.cpp does with each file on its own.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("load_worker.py")
ALIGN = 32
STRING, ARRAY = 8, 9
_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


@dataclass
class KV:
    key: str
    at: int          # the key's length field
    type_at: int
    type: int
    item_type: int
    count_at: int    # arrays only
    count: int
    value_at: int
    end: int


@dataclass
class Tensor:
    name: str
    at: int          # the name's length field
    n_dims_at: int
    ne_at: list[int]
    shape: list[int]
    type_at: int
    type: int
    offset_at: int
    offset: int


@dataclass
class FileMap:
    data: bytes
    kvs: list[KV] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    kv_end: int = 0
    info_end: int = 0
    data_offset: int = 0

    def kv(self, key: str) -> KV:
        return next(kv for kv in self.kvs if kv.key == key)

    def tensor_nbytes(self, tensor: Tensor) -> int:
        elements = 1
        for ne in tensor.shape:
            elements *= ne
        return elements * {0: 4, 1: 2}[tensor.type]


def map_file(data: bytes) -> FileMap:
    """Offsets of every field of a valid GGUF v3 file (F32/F16 tensors)."""
    fmap = FileMap(data)
    pos = 24
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)

    def u64(at: int) -> int:
        return int(struct.unpack_from("<Q", data, at)[0])

    def skip_value(vtype: int, at: int) -> int:
        return at + 8 + u64(at) if vtype == STRING else at + _SIZES[vtype]

    for _ in range(n_kv):
        at = pos
        key = data[pos + 8:pos + 8 + u64(pos)].decode()
        pos += 8 + u64(pos)
        type_at = pos
        vtype = struct.unpack_from("<i", data, pos)[0]
        pos += 4
        item_type, count_at, count = vtype, -1, 1
        if vtype == ARRAY:
            item_type = struct.unpack_from("<i", data, pos)[0]
            count_at = pos + 4
            count = u64(count_at)
            pos += 12
        value_at = pos
        for _ in range(count):
            pos = skip_value(item_type, pos)
        fmap.kvs.append(KV(key, at, type_at, vtype, item_type, count_at, count, value_at, pos))
    fmap.kv_end = pos
    for _ in range(n_tensors):
        at = pos
        name = data[pos + 8:pos + 8 + u64(pos)].decode()
        pos += 8 + u64(pos)
        n_dims_at = pos
        n_dims = struct.unpack_from("<I", data, pos)[0]
        pos += 4
        ne_at = [pos + 8 * j for j in range(n_dims)]
        shape = [u64(a) for a in ne_at]
        pos += 8 * n_dims
        type_at = pos
        ttype = struct.unpack_from("<i", data, pos)[0]
        offset_at = pos + 4
        pos += 12
        fmap.tensors.append(Tensor(name, at, n_dims_at, ne_at, shape, type_at, ttype,
                                   offset_at, u64(offset_at)))
    fmap.info_end = pos
    fmap.data_offset = -(-pos // ALIGN) * ALIGN
    return fmap


# ------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """``ops``: ``("truncate", n)``, ``("patch", offset, bytes)`` or ``("replace", bytes)``,
    applied in order to the valid file."""

    id: str
    ops: tuple[tuple[Any, ...], ...]
    expect: str = "reject"

    def to_json(self) -> dict[str, Any]:
        ops = [[op[0], *(v.hex() if isinstance(v, bytes) else v for v in op[1:])]
               for op in self.ops]
        return {"id": self.id, "ops": ops, "expect": self.expect}


def u32(value: int) -> bytes:
    return struct.pack("<I", value & 0xFFFFFFFF)


def u64(value: int) -> bytes:
    return struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF)


def _flip(data: bytes, offset: int, bit: int) -> tuple[str, int, bytes]:
    """The patch that flips bit ``bit`` of byte ``offset``."""
    return ("patch", offset, bytes([data[offset] ^ (1 << bit)]))


def gguf_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return u64(len(raw)) + raw


def kv_bytes(key: str, vtype: int, payload: bytes) -> bytes:
    return gguf_string(key) + u32(vtype) + payload


def rebuild(fmap: FileMap, *, extra_kvs: Sequence[bytes] = (), alignment: int = ALIGN,
            n_kv_delta: int = 0, tokens: Sequence[bytes] | None = None) -> bytes:
    """The file with ``extra_kvs`` appended to the metadata (and ``tokens`` as the items of
    ``tokenizer.ggml.tokens``) and the data section moved to the next multiple of
    ``alignment`` (tensor offsets are relative to it and kept as they are)."""
    data = fmap.data
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    head = data[:8] + struct.pack("<QQ", n_tensors, n_kv + len(extra_kvs) + n_kv_delta)
    metadata = data[24:fmap.kv_end]
    if tokens is not None:
        kv = fmap.kv("tokenizer.ggml.tokens")
        items = u64(len(tokens)) + b"".join(gguf_string(t) for t in tokens)
        metadata = (data[24:kv.count_at] + items + data[kv.end:fmap.kv_end])
    body = metadata + b"".join(extra_kvs) + data[fmap.kv_end:fmap.info_end]
    start = len(head) + len(body)
    align = alignment if alignment > 0 and alignment & (alignment - 1) == 0 else ALIGN
    pad = (-start) % align if align <= 4096 else 0
    return head + body + b"\0" * pad + data[fmap.data_offset:]


def _truncations(fmap: FileMap) -> Iterable[Case]:
    last = fmap.tensors[-1]
    loadable_from = fmap.data_offset + last.offset + fmap.tensor_nbytes(last)
    points = set(range(0, 41))
    for kv in fmap.kvs:
        points.update({kv.at + 1, kv.at + 9, kv.type_at + 2, kv.value_at + 1, kv.end - 1})
        if kv.count > 100:
            points.update(kv.value_at + (kv.end - kv.value_at) * k // 7 for k in range(1, 7))
    for tensor in fmap.tensors:
        points.update({tensor.at, tensor.at + 5, tensor.type_at + 1, tensor.offset_at + 3})
        start = fmap.data_offset + tensor.offset
        points.update({start, start + max(fmap.tensor_nbytes(tensor) // 2, 1)})
    points.update({fmap.info_end, fmap.data_offset - 1, fmap.data_offset,
                   len(fmap.data) - 1})
    for n in sorted(p for p in points if 0 <= p < len(fmap.data)):
        # cutting only the padding after the last tensor leaves a loadable file
        yield Case(f"truncate-{n}", (("truncate", n),),
                   "any" if n >= loadable_from else "reject")


def _header_flips(fmap: FileMap) -> Iterable[Case]:
    data = fmap.data
    for offset in range(4):
        for bit in range(0, 8, 2):
            yield Case(f"magic-flip-{offset}.{bit}", (_flip(data, offset, bit),))
    for bit in range(32):
        # 3 ^ 1 == 2: GGUF v2 is read like v3
        yield Case(f"version-flip-{bit}", (_flip(data, 4 + bit // 8, bit % 8),),
                   "any" if bit == 0 else "reject")
    for name, at in (("n_tensors", 8), ("n_kv", 16)):
        for bit in (0, 1, 2, 5, 7, 8, 15, 16, 31, 32, 47, 55, 62, 63):
            yield Case(f"{name}-flip-{bit}", (_flip(data, at + bit // 8, bit % 8),))


def _counts(fmap: FileMap) -> Iterable[Case]:
    n_tensors = len(fmap.tensors)
    n_kv = len(fmap.kvs)
    for name, at, real in (("n_tensors", 8, n_tensors), ("n_kv", 16, n_kv)):
        for value in (2**63 - 1, 2**62, 2**40, 2**32, 2**31, 10**6, -1, -(2**63), real + 1,
                      real - 1, 0, real * 2):
            # one tensor fewer: its info is read as padding, output.weight is missing and
            # llama.cpp ties the output to token_embd; the data is garbage but loads
            expect = "any" if (name, value) == ("n_tensors", real - 1) else "reject"
            yield Case(f"{name}={value}", (("patch", at, u64(value)),), expect)
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        kv = fmap.kv(key)
        for value in (2**30 + 1, 2**62, 2**64 - 1, kv.count + 1, kv.count - 1, 0, 2**30):
            yield Case(f"count-{key}={value}", (("patch", kv.count_at, u64(value)),))


def _strings(fmap: FileMap) -> Iterable[Case]:
    size = len(fmap.data)
    for kv in fmap.kvs:
        length = len(kv.key.encode())
        for value in (0, length + 1, length - 1, 2**63, 2**64 - 1, size, 2**30 + 1):
            yield Case(f"keylen-{kv.key}={value}", (("patch", kv.at, u64(value)),))
        if kv.type == STRING:
            real = struct.unpack_from("<Q", fmap.data, kv.value_at)[0]
            for value in (real + 1, real + 7, 2**64 - 1, 2**31, size):
                yield Case(f"strlen-{kv.key}={value}", (("patch", kv.value_at, u64(value)),))
    tokens = fmap.kv("tokenizer.ggml.tokens")
    at = tokens.value_at
    for index in range(tokens.count):
        real = struct.unpack_from("<Q", fmap.data, at)[0]
        if index in (0, 1, 100, tokens.count - 1):
            for value in (real + 3, 2**64 - 1, 2**40, size):
                yield Case(f"tokenlen-{index}={value}", (("patch", at, u64(value)),))
        at += 8 + real
    for tensor in fmap.tensors[:4] + fmap.tensors[-1:]:
        for value in (64, 200, 2**64 - 1, size, len(tensor.name) + 1):
            yield Case(f"namelen-{tensor.name}={value}", (("patch", tensor.at, u64(value)),))


def _types(fmap: FileMap) -> Iterable[Case]:
    for kv in fmap.kvs[:4] + [fmap.kv("llama.block_count"), fmap.kv("tokenizer.ggml.tokens"),
                              fmap.kv("tokenizer.ggml.bos_token_id")]:
        for value in (13, 255, 2**31 - 1, -1, -(2**31)):
            yield Case(f"kvtype-{kv.key}={value}", (("patch", kv.type_at, u32(value)),))
    for kv in (fmap.kv("tokenizer.ggml.tokens"), fmap.kv("tokenizer.ggml.scores")):
        for value in (ARRAY, 13, -1, 2**31 - 1):
            yield Case(f"itemtype-{kv.key}={value}", (("patch", kv.type_at + 4, u32(value)),))
    for tensor in fmap.tensors[:2] + fmap.tensors[-2:]:
        for value in (4, 5, 31, 33, 36, 38, 43, 44, 1000, -1, 2**31 - 1, 2, 12, 41):
            yield Case(f"ttype-{tensor.name}={value}", (("patch", tensor.type_at, u32(value)),))


def _dims(fmap: FileMap) -> Iterable[Case]:
    for tensor in (fmap.tensors[0], fmap.tensors[1], fmap.tensors[-1]):
        for value in (5, 2**32 - 1, 0, 3):
            yield Case(f"ndims-{tensor.name}={value}", (("patch", tensor.n_dims_at, u32(value)),))
        for value in (-1, 2**63 - 1, 2**62, 2**32, 0, tensor.shape[0] + 1):
            yield Case(f"ne0-{tensor.name}={value}", (("patch", tensor.ne_at[0], u64(value)),))
    two_d = [t for t in fmap.tensors if len(t.shape) == 2]
    for tensor in two_d[:3]:
        for ne0, ne1 in ((2**32, 2**32), (2**62, 8), (8, 2**62), (2**31, 2**33), (2**40, 2**30)):
            yield Case(f"overflow-{tensor.name}={ne0}x{ne1}",
                       (("patch", tensor.ne_at[0], u64(ne0) + u64(ne1)),))
    # a row that is not a whole number of blocks of the type
    tensor = two_d[0]
    yield Case(f"blocks-{tensor.name}", (("patch", tensor.type_at, u32(2)),))  # q4_0, ne0=8


def _offsets(fmap: FileMap) -> Iterable[Case]:
    size = len(fmap.data)
    for i, tensor in enumerate(fmap.tensors):
        values = {tensor.offset + 1, tensor.offset + ALIGN, 2**64 - 1, size, 2**63}
        if i > 0:
            values.add(fmap.tensors[i - 1].offset)  # overlaps the previous tensor
        if i + 1 < len(fmap.tensors):
            values.add(fmap.tensors[i + 1].offset)
        if i in (0, 1, 5, len(fmap.tensors) - 1):
            for value in sorted(values):
                yield Case(f"offset-{tensor.name}={value}",
                           (("patch", tensor.offset_at, u64(value)),))


def _rebuilt(fmap: FileMap) -> Iterable[Case]:
    def add(case_id: str, kvs: Sequence[bytes], expect: str = "reject", **kw: Any) -> Case:
        return Case(case_id, (("replace", rebuild(fmap, extra_kvs=kvs, **kw)),), expect)

    for value in (0, 3, 48, 2**31, 2**32 - 1):
        yield add(f"alignment={value}", [kv_bytes("general.alignment", 4, u32(value))],
                  alignment=value)
    for value in (1, 16):
        # a smaller power of two: the 32-byte layout may still satisfy it
        yield add(f"alignment={value}", [kv_bytes("general.alignment", 4, u32(value))],
                  "any", alignment=value)
    for vtype, payload in ((0, b"\x20"), (5, u32(32)), (10, u64(32)),
                           (STRING, gguf_string("32")), (ARRAY, u32(4) + u64(1) + u32(32))):
        yield add(f"alignment-type-{vtype}", [kv_bytes("general.alignment", vtype, payload)])
    yield add("duplicate-key", [kv_bytes("general.name", STRING, gguf_string("again"))])
    yield add("empty-key", [kv_bytes("", 4, u32(1))])
    yield add("nested-array", [kv_bytes("x.nested", ARRAY, u32(ARRAY) + u64(1) + u32(4)
                                         + u64(1) + u32(7))])
    yield add("kv-count-lies-high", [], n_kv_delta=1)
    yield add("kv-count-lies-low", [], n_kv_delta=-1)
    yield add("rope-scaling-type", [kv_bytes("llama.rope.scaling.type", STRING,
                                              gguf_string("bogus"))])
    for key, value in (("llama.expert_count", 2000), ("llama.expert_used_count", 2),
                       ("llama.expert_group_count", 3), ("llama.nextn_predict_layers", 9)):
        yield add(f"hparam-{key}={value}", [kv_bytes(key, 4, u32(value))])
    yield add("experts-used-over-count", [kv_bytes("llama.expert_count", 4, u32(4)),
                                          kv_bytes("llama.expert_used_count", 4, u32(8))])
    yield add("experts-groups", [kv_bytes("llama.expert_count", 4, u32(8)),
                                 kv_bytes("llama.expert_used_count", 4, u32(2)),
                                 kv_bytes("llama.expert_group_count", 4, u32(3))])


def _semantic(fmap: FileMap) -> Iterable[Case]:
    data = fmap.data
    block_count = fmap.kv("llama.block_count")
    for value in (0, 513, 2**31, 2**32 - 1, 2, 100):
        yield Case(f"block_count={value}", (("patch", block_count.value_at, u32(value)),))
    # two tokens with the same text: copy a token over another of the same length
    tokens = fmap.kv("tokenizer.ggml.tokens")
    spans: dict[int, list[int]] = {}
    at = tokens.value_at
    for _ in range(tokens.count):
        length = struct.unpack_from("<Q", data, at)[0]
        spans.setdefault(length, []).append(at)
        at += 8 + length
    pairs = [s for s in spans.values() if len(s) >= 2]
    for n, (first, second, *_) in enumerate(pairs[:4]):
        length = struct.unpack_from("<Q", data, first)[0]
        yield Case(f"duplicate-token-{n}",
                   (("patch", second + 8, data[first + 8:first + 8 + length]),))
    # llama.cpp renames an empty token to "[EMPTY_<id>]": alone that loads, next to a token
    # spelled that way it is a duplicate
    words = token_texts(fmap)
    yield Case("empty-token", (("replace", rebuild(fmap, tokens=[*words[:5], b"",
                                                                *words[6:]])),), "any")
    yield Case("empty-token-clash", (("replace", rebuild(
        fmap, tokens=[*words[:5], b"", b"[EMPTY_5]", *words[7:]])),))
    yield Case("token-count-short", (("replace", rebuild(fmap, tokens=words[:-1])),))
    names: dict[int, list[Tensor]] = {}
    for tensor in fmap.tensors:
        names.setdefault(len(tensor.name), []).append(tensor)
    same = next(v for v in names.values() if len(v) >= 2)
    yield Case("duplicate-tensor-name",
               (("patch", same[1].at + 8, same[0].name.encode()),))
    yield Case("zero-after-header", (("replace", data[:24] + b"\0" * (len(data) - 24)),))
    yield Case("empty-file", (("replace", b""),))
    yield Case("magic-only", (("replace", b"GGUF"),))
    yield Case("header-only", (("replace", data[:24]),))


def token_texts(fmap: FileMap) -> list[bytes]:
    tokens = fmap.kv("tokenizer.ggml.tokens")
    words, at = [], tokens.value_at
    for _ in range(tokens.count):
        length = struct.unpack_from("<Q", fmap.data, at)[0]
        words.append(fmap.data[at + 8:at + 8 + length])
        at += 8 + length
    return words


def _random_damage(fmap: FileMap, seed: int, n: int) -> Iterable[Case]:
    rng = random.Random(seed)
    data = fmap.data
    regions = [(0, 24), (24, fmap.kv_end), (fmap.kv_end, fmap.info_end)]
    for i in range(n):
        start, end = regions[i % len(regions)]
        ops = []
        for _ in range(rng.randint(1, 4)):
            ops.append(_flip(data, rng.randrange(start, end), rng.randrange(8)))
        yield Case(f"random-{i}", tuple(ops), "any")
    for i in range(n // 4):
        offset = rng.randrange(0, fmap.info_end)
        garbage = bytes(rng.randrange(256) for _ in range(rng.randint(4, 64)))
        yield Case(f"garbage-{i}", (("patch", offset, garbage),), "any")


def build_corpus(data: bytes, seed: int = 0, n_random: int = 60) -> list[Case]:
    """Every case for the valid file ``data`` (ids are unique)."""
    fmap = map_file(data)
    cases = [*_truncations(fmap), *_header_flips(fmap), *_counts(fmap), *_strings(fmap),
             *_types(fmap), *_dims(fmap), *_offsets(fmap), *_rebuilt(fmap), *_semantic(fmap),
             *_random_damage(fmap, seed, n_random)]
    assert len({c.id for c in cases}) == len(cases)
    return cases


def apply(data: bytes, ops: Iterable[Sequence[Any]]) -> bytes:
    """The file ``ops`` (as in ``Case``, bytes as hex or bytes) make of ``data``."""
    out = bytearray(data)
    for op in ops:
        value = op[-1]
        raw = bytes.fromhex(value) if isinstance(value, str) else value
        if op[0] == "truncate":
            del out[op[1]:]
        elif op[0] == "patch":
            out[op[1]:op[1] + len(raw)] = raw
        elif op[0] == "replace":
            out = bytearray(raw)
        else:
            raise ValueError(f"unknown op {op[0]!r}")
    return bytes(out)


# ------------------------------------------------------------------------------ runner


def _run_batch(base: Path, cases: Sequence[Case], validate: bool, workdir: Path,
               timeout: float) -> tuple[dict[str, dict[str, Any]], int, str]:
    job = workdir / "job.json"
    job.write_text(json.dumps({"base": str(base), "workdir": str(workdir), "validate": validate,
                               "cases": [c.to_json() for c in cases]}))
    # GGML_NO_BACKTRACE: ggml would otherwise attach gdb to print a crash's backtrace
    proc = subprocess.run([sys.executable, str(WORKER), str(job)], capture_output=True,
                          text=True, timeout=timeout,
                          env={**os.environ, "GGML_NO_BACKTRACE": "1"})
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            results[record["id"]] = record
    return results, proc.returncode, proc.stderr[-2000:]


def run_cases(base: Path, cases: Sequence[Case], *, validate: bool = True,
              batch: int = 50, timeout: float = 600) -> dict[str, dict[str, Any]]:
    """Load every case in subprocesses of ``batch`` files; a worker that dies marks the
    first case it did not report as ``"crash"`` and the rest run in a fresh worker."""
    outcomes: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="llamakit-corpus-") as tmp:
        pending = list(cases)
        while pending:
            chunk, pending = pending[:batch], pending[batch:]
            while chunk:
                results, code, stderr = _run_batch(base, chunk, validate, Path(tmp), timeout)
                outcomes.update(results)
                rest = [c for c in chunk if c.id not in results]
                if code == 0 and not rest:
                    break
                if not rest:  # died after reporting its last case (while exiting)
                    rest = [chunk[-1]]
                outcomes[rest[0].id] = {"id": rest[0].id, "outcome": "crash",
                                        "returncode": code, "stderr": stderr}
                chunk = rest[1:]
    return outcomes


def _main() -> None:
    import llamakit.testing

    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp) / "vocab.gguf"
        write_tiny_vocab(vocab)
        base = llamakit.testing.write_llama_model(Path(tmp) / "base.gguf", **base_model_args(vocab))
        cases = build_corpus(base.read_bytes())
        print(f"{len(cases)} cases, {sum(c.expect == 'reject' for c in cases)} must be rejected")
        for validate in (True, False):
            outcomes = run_cases(base, cases, validate=validate)
            kinds: dict[str, int] = {}
            for record in outcomes.values():
                kind = record["outcome"] if record["outcome"] != "error" else record["type"]
                kinds[kind] = kinds.get(kind, 0) + 1
            print(f"validate={validate}: {dict(sorted(kinds.items()))}")
            for record in outcomes.values():
                if record["outcome"] == "crash":
                    print(f"  crash: {record['id']} (status {record['returncode']}): "
                          f"{record['stderr'].strip().splitlines()[-1:]}")


def base_model_args(vocab: Path) -> dict[str, Any]:
    """``write_llama_model`` arguments of the corpus's valid file: the smallest shape."""
    return {"vocab": str(vocab), "n_embd": 8, "n_layer": 1, "n_head": 2, "n_head_kv": 1,
            "n_ff": 16, "dtype": "f16"}


def write_tiny_vocab(path: Path) -> Path:
    """A 274-token SentencePiece-style vocabulary (``tokenizer.*`` keys only matter): byte
    tokens and a few words, so a model loads in milliseconds and the corpus stays small."""
    import gguf

    words = ["▁", "▁a", "▁b", "▁the", "▁Hello", "▁world", "e", "t", "a", "o", "n", "s",
             "Hello", "world", "▁Hi"]
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *words]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * 259 + [-float(i) for i in range(len(words))])
    writer.add_token_types([2, 3, 3] + [6] * 256 + [1] * len(words))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


if __name__ == "__main__":
    _main()
