"""Tests of llamakit.testing: the synthetic GGUF writer and the pytest fixtures."""
# The plugin's fixtures are imported below, so test arguments "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

import functools
import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# The plugin's fixtures, imported so that this module works whether or not the pytest11
# entry point is active (it is once llamakit is installed).
from llamakit.testing.fixtures import (  # noqa: F401
    llama_cpp_dir,
    synthetic_model,
    tiny_bpe_model_path,
    tiny_model_path,
)

gguf = pytest.importorskip("gguf")

from llamakit.testing import vocab_path, write_llama_model  # noqa: E402

_TWO_D = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]


@functools.lru_cache(maxsize=16)
def _reader(path: str, size: int, mtime_ns: int) -> Any:
    # gguf's reader takes seconds on 100k-token vocabularies: read each file version once.
    return gguf.GGUFReader(path)


def _read(path: Path) -> Any:
    stat = path.stat()
    return _reader(str(path), stat.st_size, stat.st_mtime_ns)


def _fields(path: Path) -> dict[str, Any]:
    return dict(_read(path).fields)


def _value(field: Any) -> Any:
    return field.contents()


def _tensors(path: Path) -> dict[str, Any]:
    return {t.name: t for t in _read(path).tensors}


# --------------------------------------------------------------------------- vocab_path


def test_vocab_path_finds_llama_cpp_vocab(llama_cpp_dir: Path) -> None:
    path = vocab_path("llama-spm")
    assert path == llama_cpp_dir / "models" / "ggml-vocab-llama-spm.gguf"
    assert path.is_file()


def test_vocab_path_unknown_lists_available() -> None:
    with pytest.raises(FileNotFoundError) as excinfo:
        vocab_path("no-such-vocab")
    message = str(excinfo.value)
    assert "no-such-vocab" in message
    assert "llama-spm" in message and "llama-bpe" in message


# --------------------------------------------------------------------------- the writer


def test_default_model_layout(tiny_model_path: Path) -> None:
    fields = _fields(tiny_model_path)
    expected = {
        "general.architecture": "llama",
        "general.name": "llamakit synthetic (random weights)",
        "general.file_type": 0,
        "llama.vocab_size": 32000,
        "llama.context_length": 2048,
        "llama.embedding_length": 64,
        "llama.block_count": 2,
        "llama.feed_forward_length": 128,
        "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 2,
        "llama.rope.dimension_count": 16,
    }
    for key, value in expected.items():
        assert _value(fields[key]) == value, key
    for key in ("llama.context_length", "llama.embedding_length", "llama.block_count"):
        assert fields[key].types == [gguf.GGUFValueType.UINT32]
    assert fields["llama.attention.layer_norm_rms_epsilon"].types == [
        gguf.GGUFValueType.FLOAT32
    ]
    assert _value(fields["llama.attention.layer_norm_rms_epsilon"]) == pytest.approx(1e-5)

    tensors = _tensors(tiny_model_path)
    names = {"token_embd.weight", "output_norm.weight", "output.weight"}
    for i in range(2):
        names |= {f"blk.{i}.{n}.weight" for n in [*_TWO_D, "attn_norm", "ffn_norm"]}
    assert set(tensors) == names
    # GGUF shapes list ne[0] first.
    shapes = {
        "token_embd.weight": [64, 32000],
        "output.weight": [64, 32000],
        "output_norm.weight": [64],
        "blk.0.attn_q.weight": [64, 64],
        "blk.0.attn_k.weight": [64, 32],
        "blk.0.attn_v.weight": [64, 32],
        "blk.0.attn_output.weight": [64, 64],
        "blk.1.ffn_gate.weight": [64, 128],
        "blk.1.ffn_up.weight": [64, 128],
        "blk.1.ffn_down.weight": [128, 64],
        "blk.1.attn_norm.weight": [64],
    }
    for name, shape in shapes.items():
        assert [int(d) for d in tensors[name].shape] == shape, name
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in tensors.values())


def test_weights_are_random_small_and_norms_one(tiny_model_path: Path) -> None:
    tensors = _tensors(tiny_model_path)
    for name in ("output_norm.weight", "blk.0.attn_norm.weight", "blk.1.ffn_norm.weight"):
        assert np.all(np.asarray(tensors[name].data) == 1.0), name
    embd = np.asarray(tensors["token_embd.weight"].data, dtype=np.float64)
    assert embd.std() == pytest.approx(0.02, rel=0.05)
    assert abs(embd.mean()) < 1e-3
    q = np.asarray(tensors["blk.0.attn_q.weight"].data)
    k = np.asarray(tensors["blk.1.attn_q.weight"].data)
    assert not np.array_equal(q, k)


def test_tokenizer_keys_copied_exactly(tiny_model_path: Path) -> None:
    source = _fields(vocab_path("llama-spm"))
    written = _fields(tiny_model_path)
    keys = [k for k in source if k.startswith("tokenizer.")]
    assert "tokenizer.ggml.tokens" in keys and "tokenizer.ggml.scores" in keys
    assert [k for k in written if k.startswith("tokenizer.")] == keys
    for key in keys:
        assert written[key].types == source[key].types, key
        assert _value(written[key]) == _value(source[key]), key


def test_gpt2_vocab(tmp_path: Path) -> None:
    # gpt-2's vocab carries a string array of merges besides the tokens (and reads fast).
    path = write_llama_model(tmp_path / "gpt2.gguf", vocab="gpt-2")
    source = _fields(vocab_path("gpt-2"))
    written = _fields(path)
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.merges",
                "tokenizer.ggml.token_type"):
        assert written[key].types == source[key].types, key
        assert _value(written[key]) == _value(source[key]), key
    n_vocab = len(_value(source["tokenizer.ggml.tokens"]))
    assert _value(written["llama.vocab_size"]) == n_vocab
    assert [int(d) for d in _tensors(path)["output.weight"].shape] == [64, n_vocab]


def test_vocab_given_as_path(tmp_path: Path) -> None:
    by_name = write_llama_model(tmp_path / "a.gguf")
    by_path = write_llama_model(tmp_path / "b.gguf", vocab=vocab_path("llama-spm"))
    by_str = write_llama_model(tmp_path / "c.gguf", vocab=str(vocab_path("llama-spm")))
    assert by_name.read_bytes() == by_path.read_bytes() == by_str.read_bytes()


def test_deterministic_byte_for_byte(tmp_path: Path, tiny_model_path: Path) -> None:
    again = write_llama_model(tmp_path / "again.gguf")
    assert again == tmp_path / "again.gguf"
    assert again.read_bytes() == tiny_model_path.read_bytes()
    other_seed = write_llama_model(tmp_path / "seed1.gguf", seed=1)
    assert other_seed.stat().st_size == again.stat().st_size
    assert other_seed.read_bytes() != again.read_bytes()


def test_f16(tmp_path: Path, tiny_model_path: Path) -> None:
    path = write_llama_model(tmp_path / "f16.gguf", dtype="f16")
    assert _value(_fields(path)["general.file_type"]) == 1
    tensors = _tensors(path)
    f32 = _tensors(tiny_model_path)
    for name, tensor in tensors.items():
        if name.endswith("norm.weight"):
            assert tensor.tensor_type == gguf.GGMLQuantizationType.F32, name
        else:
            assert tensor.tensor_type == gguf.GGMLQuantizationType.F16, name
            # The same draws as the F32 model, rounded.
            np.testing.assert_array_equal(
                np.asarray(tensor.data),
                np.asarray(f32[name].data).astype(np.float16),
            )
    assert path.stat().st_size < tiny_model_path.stat().st_size * 0.6


def test_chat_template_and_metadata(tmp_path: Path) -> None:
    template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    path = write_llama_model(
        tmp_path / "meta.gguf",
        chat_template=template,
        name="custom",
        n_ctx_train=4096,
        metadata={
            "test.count": 7,
            "test.negative": -3,
            "test.big": 1 << 40,
            "test.ratio": 0.5,
            "test.flag": True,
            "test.text": "héllo",
            "general.author": "llamakit",
            "llama.rope.freq_base": 500000,  # an existing key keeps its type (FLOAT32)
        },
    )
    fields = _fields(path)
    vt = gguf.GGUFValueType
    expected = {
        "tokenizer.chat_template": (vt.STRING, template),
        "general.name": (vt.STRING, "custom"),
        "llama.context_length": (vt.UINT32, 4096),
        "test.count": (vt.UINT32, 7),
        "test.negative": (vt.INT32, -3),
        "test.big": (vt.INT64, 1 << 40),
        "test.ratio": (vt.FLOAT32, 0.5),
        "test.flag": (vt.BOOL, True),
        "test.text": (vt.STRING, "héllo"),
        "general.author": (vt.STRING, "llamakit"),
        "llama.rope.freq_base": (vt.FLOAT32, 500000.0),
    }
    for key, (vtype, value) in expected.items():
        assert fields[key].types == [vtype], key
        assert _value(fields[key]) == value, key
    assert list(fields).count("llama.rope.freq_base") == 1


def test_chat_template_replaces_the_vocab_one(tmp_path: Path) -> None:
    source = _fields(vocab_path("phi-3"))
    assert "tokenizer.chat_template" in source
    kept = _fields(write_llama_model(tmp_path / "kept.gguf", vocab="phi-3"))
    assert _value(kept["tokenizer.chat_template"]) == _value(source["tokenizer.chat_template"])
    replaced = _fields(write_llama_model(tmp_path / "new.gguf", vocab="phi-3",
                                         chat_template="T"))
    assert _value(replaced["tokenizer.chat_template"]) == "T"
    assert list(replaced).count("tokenizer.chat_template") == 1


def test_shape_options(tmp_path: Path) -> None:
    path = write_llama_model(tmp_path / "shape.gguf", n_embd=96, n_layer=3, n_head=6,
                             n_head_kv=3, n_ff=160)
    fields = _fields(path)
    assert _value(fields["llama.rope.dimension_count"]) == 16
    assert _value(fields["llama.block_count"]) == 3
    tensors = _tensors(path)
    assert "blk.2.ffn_down.weight" in tensors and "blk.3.ffn_down.weight" not in tensors
    assert [int(d) for d in tensors["blk.2.attn_k.weight"].shape] == [96, 48]
    assert [int(d) for d in tensors["blk.2.ffn_down.weight"].shape] == [160, 96]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"n_embd": 65}, ValueError),
        ({"n_head_kv": 3}, ValueError),
        ({"n_layer": 0}, ValueError),
        ({"dtype": "q8_0"}, ValueError),
        ({"metadata": {"x.list": [1, 2]}}, TypeError),
        ({"metadata": {"llama.block_count": "two"}}, TypeError),
        ({"metadata": {"x.huge": 1 << 70}}, ValueError),
        ({"vocab": "no-such-vocab"}, FileNotFoundError),
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict[str, Any],
                           error: type[Exception]) -> None:
    target = tmp_path / "bad.gguf"
    with pytest.raises(error):
        write_llama_model(target, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "model.gguf"
    write_llama_model(target, seed=1)
    first = target.read_bytes()
    write_llama_model(target, seed=2)
    assert target.read_bytes() != first
    assert [p.name for p in target.parent.iterdir()] == ["model.gguf"]


# --------------------------------------------------------------------------- fixtures


def test_synthetic_model_caches_by_normalised_arguments(
    synthetic_model: Any, tiny_model_path: Path
) -> None:
    assert synthetic_model() == tiny_model_path
    assert synthetic_model(seed=0, vocab="llama-spm") == tiny_model_path
    assert synthetic_model(metadata={"a": 1, "b": 2}) == synthetic_model(
        metadata={"b": 2, "a": 1}
    )
    other = synthetic_model(seed=3)
    assert other != tiny_model_path and other.is_file()
    with pytest.raises(TypeError):
        synthetic_model(path="x.gguf")
    with pytest.raises(TypeError):
        synthetic_model(no_such_argument=1)


def test_tiny_bpe_model(tiny_bpe_model_path: Path) -> None:
    # Checked on the raw key-value records (gguf's reader needs seconds for this vocab).
    from llamakit.testing._synthetic import _read_kvs

    written = {kv.key: kv for kv in _read_kvs(tiny_bpe_model_path)}
    source = [kv for kv in _read_kvs(vocab_path("llama-bpe")) if kv.key.startswith("tokenizer.")]
    assert [written[kv.key] for kv in source] == source
    assert written["tokenizer.ggml.model"].payload.endswith(b"gpt2")
    assert written["tokenizer.ggml.tokens"].count == 128256
    assert written["llama.vocab_size"].payload == (128256).to_bytes(4, "little")


def test_fixture_module_import_is_light() -> None:
    # Whatever ``import llamakit`` itself loads is not the plugin's doing.
    code = (
        "import sys; import llamakit; before = set(sys.modules); "
        "import llamakit.testing.fixtures; "
        "new = set(sys.modules) - before; "
        "heavy = [m for m in new if m.split('.')[0] in ('numpy', 'gguf') "
        "or m.startswith(('llamakit._build', 'llamakit.testing._'))]; "
        "print(','.join(sorted(heavy)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ""


def test_package_exports() -> None:
    testing = importlib.import_module("llamakit.testing")
    for name in testing.__all__:
        assert callable(getattr(testing, name)) or name == "MetadataValue"
    with pytest.raises(AttributeError):
        _ = testing.no_such_name
