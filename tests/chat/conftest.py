"""Chat fixtures: llama.cpp's real templates, a ChatML model, and a scripted ChatML model.

The scripted model is a synthetic qwen2-vocab model whose weights are edited so that greedy
decoding is a fixed bigram chain: after "\\n" (the end of ChatML's generation prompt) it
says "Hello", then "!", then ``<|im_end|>``. Attention and feed-forward outputs are zeroed,
so the last hidden state is the embedding of the last token; each scripted token's
embedding is a unit vector and the output row of its successor points along it.
"""

from __future__ import annotations

import datetime as dt
import mmap
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import llamakit
from llamakit._plugins.manager import PluginHost, reset_plugin_host

#: The moment ``strftime_now`` renders in tests (both renderers).
FIXED_NOW = dt.datetime(2025, 7, 14, 9, 30, 5)

_SCALE = 10.0


@dataclass(frozen=True)
class Scripted:
    """The scripted model's path and its token ids."""

    path: Path
    newline: int
    hello: int
    bang: int
    im_end: int


@pytest.fixture(scope="session")
def templates_dir(llama_cpp_dir: Path) -> Path:
    """llama.cpp's collection of real chat templates (read in place, never copied)."""
    return llama_cpp_dir / "models" / "templates"


#: The shape of the qwen2-vocabulary models (the vocabulary is most of their size).
QWEN2_SHAPE = {"vocab": "qwen2", "n_embd": 32, "n_layer": 1, "n_head": 4, "n_head_kv": 2,
               "n_ff": 64}


@pytest.fixture(scope="session")
def chatml_model(synthetic_model: Callable[..., Path]) -> Iterator[llamakit.Model]:
    """A random-weight model with qwen2's vocabulary and its ChatML template."""
    with llamakit.load_model(synthetic_model(**QWEN2_SHAPE), backend="cpu") as model:
        yield model


_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


def _f32_tensors(path: Path) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Byte offset and numpy shape of each F32 tensor of a GGUF file (gguf's own reader
    takes many seconds on a 150k-token vocabulary; only offsets are needed here)."""
    data = path.read_bytes()
    at = 8  # magic and version
    n_tensors, n_kv = struct.unpack_from("<QQ", data, at)
    at += 16

    def skip(vtype: int, at: int) -> int:
        if vtype == _STRING:
            return at + 8 + struct.unpack_from("<Q", data, at)[0]
        if vtype == _ARRAY:
            item, count = struct.unpack_from("<IQ", data, at)
            at += 12
            if item in _SCALAR_SIZES:
                return at + count * _SCALAR_SIZES[item]
            for _ in range(count):
                at = skip(item, at)
            return at
        return at + _SCALAR_SIZES[vtype]

    alignment = 32
    for _ in range(n_kv):
        (length,) = struct.unpack_from("<Q", data, at)
        key = data[at + 8:at + 8 + length].decode()
        at += 8 + length
        (vtype,) = struct.unpack_from("<I", data, at)
        if key == "general.alignment":
            (alignment,) = struct.unpack_from("<I", data, at + 4)
        at = skip(vtype, at + 4)
    infos = []
    for _ in range(n_tensors):
        (length,) = struct.unpack_from("<Q", data, at)
        name = data[at + 8:at + 8 + length].decode()
        at += 8 + length
        (n_dims,) = struct.unpack_from("<I", data, at)
        dims = struct.unpack_from(f"<{n_dims}Q", data, at + 4)
        ggml_type, offset = struct.unpack_from("<IQ", data, at + 4 + 8 * n_dims)
        at += 4 + 8 * n_dims + 12
        if ggml_type == 0:  # F32
            infos.append((name, offset, tuple(reversed(dims))))
    start = -(-at // alignment) * alignment
    return {name: (start + offset, shape) for name, offset, shape in infos}


def _script(path: Path, chain: list[int]) -> None:
    tensors = _f32_tensors(path)
    with path.open("r+b") as handle, mmap.mmap(handle.fileno(), 0) as buffer:
        def array(name: str) -> np.ndarray:  # type: ignore[type-arg]
            offset, shape = tensors[name]
            return np.ndarray(shape, dtype=np.float32, buffer=buffer, offset=offset)

        for name in tensors:
            if name.endswith(("attn_output.weight", "ffn_down.weight")):
                array(name)[...] = 0
        embed, output = array("token_embd.weight"), array("output.weight")
        for dim, (token, successor) in enumerate(zip(chain, chain[1:], strict=False)):
            embed[token] = 0
            embed[token, dim] = 1
            output[successor] = 0
            output[successor, dim] = _SCALE
        del embed, output
        buffer.flush()


@pytest.fixture(scope="session")
def scripted_model_path(synthetic_model: Callable[..., Path],
                        tmp_path_factory: pytest.TempPathFactory) -> Scripted:
    """The scripted ChatML model (see the module docstring)."""
    base = synthetic_model(**QWEN2_SHAPE)
    with llamakit.load_model(base, backend="cpu", vocab_only=True) as vocab:
        hello, bang = vocab.tokenize("Hello!", add_special=False)
        (newline,) = vocab.tokenize("\n", add_special=False)
        (im_end,) = vocab.tokenize("<|im_end|>", add_special=False, parse_special=True)
        assert vocab.is_eog(im_end)
    path = tmp_path_factory.mktemp("chat") / "scripted-chatml.gguf"
    shutil.copyfile(base, path)
    _script(path, [newline, hello, bang, im_end])
    return Scripted(path, newline, hello, bang, im_end)


@pytest.fixture(scope="session")
def scripted_model(scripted_model_path: Scripted) -> Iterator[llamakit.Model]:
    with llamakit.load_model(scripted_model_path.path, backend="cpu") as model:
        yield model


@pytest.fixture
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> dt.datetime:
    """Pins the time ``strftime_now`` formats."""
    from llamakit._chat import sandbox

    monkeypatch.setattr(sandbox, "_now", lambda: FIXED_NOW)
    return FIXED_NOW


@pytest.fixture
def plugin_host() -> Iterator[PluginHost]:
    """A fresh process-wide plugin host (installed plugins loaded) for registering test
    plugins; the previous host comes back afterwards."""
    host = PluginHost()
    old = reset_plugin_host(host)
    try:
        yield host
    finally:
        reset_plugin_host(old)



@pytest.fixture(scope="session")
def scripter() -> tuple[dict[str, object], Callable[[Path, list[int]], None]]:
    """``(QWEN2_SHAPE, script)`` for tests that script a model of their own."""
    return QWEN2_SHAPE, _script
