"""Tokenization against llama.cpp's own reference vectors (models/ggml-vocab-*.gguf.inp/.out)."""

from __future__ import annotations

from pathlib import Path

import pytest

import llamakit

_SEP = "\n__ggml_vocab_test__\n"
VOCABS = ["llama-spm", "llama-bpe", "gpt-2", "qwen2", "phi-3", "falcon", "deepseek-coder",
          "command-r", "mpt", "starcoder", "refact"]


def _cases(base: Path) -> list[tuple[str, list[int]]]:
    raw = Path(str(base) + ".inp").read_bytes().decode("utf-8")
    inputs = []
    pos = 0
    while pos < len(raw):
        nxt = raw.find(_SEP, pos)
        if nxt < 0:
            inputs.append(raw[pos:])
            break
        inputs.append(raw[pos:nxt])
        pos = nxt + len(_SEP)
    outputs = [[int(t) for t in line.split()] for line in
               Path(str(base) + ".out").read_text(encoding="utf-8").splitlines()]
    assert len(inputs) == len(outputs)
    return list(zip(inputs, outputs, strict=False))


@pytest.mark.parametrize("vocab", VOCABS)
def test_tokenize_matches_llama_cpp_reference(vocab: str, llama_cpp_dir: Path) -> None:
    """Every reference text tokenizes to exactly llama.cpp's recorded ids, and round-trips."""
    base = llama_cpp_dir / "models" / f"ggml-vocab-{vocab}.gguf"
    if not Path(str(base) + ".inp").exists():
        pytest.skip(f"no reference vectors for {vocab} in this llama.cpp")
    cases = _cases(base)
    assert cases
    with llamakit.load_model(base, backend="cpu", vocab_only=True) as model:
        for text, expected in cases:
            assert model.tokenize(text, add_special=False, parse_special=False) == expected, text
            assert model.tokenize(text.encode(), add_special=False) == expected
