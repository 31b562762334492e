"""Model.perplexity and `llamakit perplexity` against llama.cpp's llama-perplexity."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import llamakit
from llamakit.__main__ import main
from llamakit.testing import build_tool

_WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while",
          "seven", "wizards", "quietly", "hex", "bold", "jumping", "zebras"]
_FINAL = re.compile(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)")


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ppl") / "text.txt"
    path.write_text(" ".join(_WORDS[(i * 7 + i // 3) % len(_WORDS)] for i in range(700)),
                    encoding="utf-8")
    return path


def _reference(model_path: Path, text: Path, n_ctx: int, n_batch: int) -> tuple[float, float,
                                                                                list[float]]:
    binary = build_tool("llama-perplexity")
    # llama.cpp's logger writes from a thread it never joins (common/log.cpp leaks it on
    # purpose, llama.cpp issue 22142): on a busy machine the last lines, the final
    # estimate among them, can be lost at exit. Run again then; the figures are the same.
    for _ in range(3):
        proc = subprocess.run([str(binary), "-m", str(model_path), "-f", str(text), "-c",
                               str(n_ctx), "-b", str(n_batch), "-t", "2"],
                              capture_output=True, text=True, timeout=600, check=True)
        output = proc.stdout + proc.stderr
        final = _FINAL.search(output)
        if final is not None:
            break
    assert final is not None, output[-2000:]
    chunks = [float(v) for v in re.findall(r"\[\d+\]([0-9.]+),", output)]
    return float(final.group(1)), float(final.group(2)), chunks


@pytest.mark.parametrize(("n_ctx", "n_batch"), [(128, 2048), (128, 128), (128, 64)],
                         ids=["4-chunks-per-decode", "one-chunk-per-decode", "two-decodes"])
def test_perplexity_equals_llama_perplexity(model: llamakit.Model, tiny_model_path: Path,
                                            text_file: Path, n_ctx: int, n_batch: int) -> None:
    """Same figure as llama-perplexity built from the pinned tree, to 1e-3, per chunk too."""
    ppl, error, chunks = _reference(tiny_model_path, text_file, n_ctx, n_batch)
    result = model.perplexity(text_file.read_text(encoding="utf-8"), n_ctx=n_ctx,
                              n_batch=n_batch, n_threads=2)
    assert abs(result.perplexity - ppl) < 1e-3
    assert abs(result.uncertainty - error) < 1e-3
    assert len(result.chunks) == len(chunks)
    assert all(abs(a - b) < 1e-3 for a, b in zip(result.chunks, chunks, strict=True))
    assert result.n_scored == len(chunks) * (n_ctx - n_ctx // 2 - 1)


def test_perplexity_rejects_short_texts_and_bad_sizes(model: llamakit.Model) -> None:
    """Fewer than 2 * n_ctx tokens is ContextError; bad sizes are ConfigError."""
    with pytest.raises(llamakit.ContextError, match="needs at least 256"):
        model.perplexity("too short", n_ctx=128)
    with pytest.raises(llamakit.ConfigError, match="n_batch"):
        model.perplexity("x " * 600, n_ctx=128, n_batch=200)
    with pytest.raises(llamakit.ConfigError, match="n_ctx"):
        model.perplexity("x " * 600, n_ctx=0)


def test_cli_perplexity(tiny_model_path: Path, text_file: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    """`llamakit perplexity MODEL FILE` prints llama-perplexity's final line."""
    code = main(["perplexity", str(tiny_model_path), str(text_file), "--n-ctx", "128",
                 "--chunks", "2", "--n-threads", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert _FINAL.search(captured.out) and "[2]" in captured.err
