"""Class 3 of issue 21: llama.cpp asserts that fire after loading are unreachable.

One test per entry of the audit in docs/security.md. Each runs its case in a subprocess:
a regression aborts that process (SIGABRT), which the test reports instead of dying.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")


def _isolated(script: str, *args: object) -> str:
    """Run ``script`` in a fresh interpreter; its last stdout line, or fail on a signal."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode < 0:
        pytest.fail(f"the process died by {signal.Signals(-proc.returncode).name}:\n"
                    f"{proc.stderr[-2000:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def _with_kv_heads(source: Path, target: Path, n_head_kv: int) -> Path:
    """A copy of ``source`` (4 heads of 16) with ``n_head_kv`` key/value heads and K/V
    weights shaped to match, so that it loads."""
    reader = gguf.GGUFReader(source)
    writer = gguf.GGUFWriter(target, "llama")
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        if field.name == "llama.attention.head_count_kv":
            writer.add_uint32(field.name, n_head_kv)
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            item = field.types[-1]
            if item == gguf.GGUFValueType.STRING:
                writer.add_array(field.name, [bytes(field.parts[i]).decode("utf-8", "replace")
                                              for i in field.data])
            else:
                writer.add_key_value(field.name, [field.parts[i][0].item() for i in field.data],
                                     vtype, sub_type=item)
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_string(field.name, bytes(field.parts[field.data[0]]).decode())
        else:
            writer.add_key_value(field.name, field.parts[field.data[0]][0].item(), vtype)
    rng = np.random.default_rng(0)
    for tensor in reader.tensors:
        data = np.array(tensor.data)
        if tensor.name.endswith(("attn_k.weight", "attn_v.weight")):
            data = (rng.standard_normal((16 * n_head_kv, data.shape[1])) * 0.02
                    ).astype(data.dtype)
        writer.add_tensor(tensor.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


_HEADS = """
import sys, llamakit
path, validate = sys.argv[1], sys.argv[2] == "1"
try:
    model = llamakit.load_model(path, backend="cpu", validate=validate)
    model.new_context(n_ctx=64, n_threads=1)
    print("made")
except llamakit.LlamakitError as exc:
    print(type(exc).__name__)
"""


@pytest.mark.parametrize("validate", [True, False], ids=["validated", "validate-off"])
def test_heads_that_kv_heads_do_not_divide(tiny_model_path: Path, tmp_path: Path,
                                           validate: bool) -> None:
    """4 heads over 3 KV heads (GGML_ASSERT(ggml_can_mul_mat(k, q)) at the first graph):
    the validator refuses the file; without it, making a context is ContextError."""
    path = _with_kv_heads(tiny_model_path, tmp_path / "kv3.gguf", 3)
    expected = "GGUFFormatError" if validate else "ContextError"
    assert _isolated(_HEADS, path, int(validate)) == expected


def test_heads_that_divide_still_work(tiny_model_path: Path, tmp_path: Path) -> None:
    """The rewritten model with 4 heads over 1 KV head loads and makes a context."""
    path = _with_kv_heads(tiny_model_path, tmp_path / "kv1.gguf", 1)
    assert _isolated(_HEADS, path, 1) == "made"


def test_vocab_only_model_refuses_a_context(tiny_model_path: Path) -> None:
    """A vocab_only model (GGML_ASSERT(n_backends > 0)) gives ContextError, not an abort."""
    script = """
    import sys, llamakit
    model = llamakit.load_model(sys.argv[1], backend="cpu", vocab_only=True)
    assert model.tokenize("Hello")
    try:
        model.new_context(n_ctx=64).generate("Hi", max_new_tokens=2)
        print("made")
    except llamakit.ContextError as exc:
        print(type(exc).__name__)
    """
    assert _isolated(script, tiny_model_path) == "ContextError"


_SEQ_CP = """
import sys, llamakit
unified = sys.argv[2] == "1"
with llamakit.load_model(sys.argv[1], backend="cpu") as model, \\
        model.new_context(n_ctx=128, n_seq_max=2, kv_unified=unified, n_threads=1) as ctx:
    ctx.generate("Hello there", max_new_tokens=2, temperature=0)
    try:
        ctx.kv.seq_cp(0, 1, 1, 3)
        outcome = "copied"
    except llamakit.ConfigError:
        outcome = "ConfigError"
    ctx.kv.seq_cp(0, 1)  # the whole sequence is always fine
    ctx.generate("Hello", max_new_tokens=2, temperature=0)
    print(outcome)
"""


@pytest.mark.parametrize(("unified", "expected"), [(False, "ConfigError"), (True, "copied")],
                         ids=["streams", "unified"])
def test_partial_seq_cp(tiny_model_path: Path, unified: bool, expected: str) -> None:
    """Part of a sequence copied across separate KV streams (GGML_ASSERT(is_full)) is a
    ConfigError; a unified cache copies it."""
    assert _isolated(_SEQ_CP, tiny_model_path, int(unified)) == expected


def test_the_audit_names_the_pinned_commit() -> None:
    """docs/security.md's assert audit is for the llama.cpp commit the project pins."""
    import json

    root = Path(__file__).resolve().parents[2]
    commit = json.loads((root / "llama.cpp" / "pin.json").read_text())["commit"]
    audit = (root / "docs" / "security.md").read_text()
    section = audit[audit.index("## llama.cpp asserts after loading"):]
    assert f"`{commit}`" in section.split("\n\n")[1]
