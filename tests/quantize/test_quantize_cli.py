"""``llamakit quantize SRC DST TYPE`` on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamakit.__main__ import main
from llamakit._quantize.gguf_header import read_header


def test_cli_quantizes(f16_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                       ) -> None:
    """SRC DST TYPE writes the file and reports sizes; options reach quantize()."""
    target = tmp_path / "q.gguf"
    code = main(["quantize", str(f16_model), str(target), "q4_0", "--no-progress",
                 "--tensor-type", r"attn_q\.=q8_0", "--output-tensor-type", "q8_0",
                 "--nthread", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("Q4_0: ") and str(target) in out and "1 threads" in out
    types = {t.name: t.type for t in read_header(target).tensors}
    assert types["blk.0.attn_q.weight"] == 8 and types["output.weight"] == 8  # q8_0
    assert types["blk.0.attn_k.weight"] == 2  # q4_0


def test_cli_dry_run_needs_no_destination(f16_model: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """quantize SRC TYPE --dry-run prints the predicted size and writes nothing."""
    assert main(["quantize", str(f16_model), "Q8_0", "--dry-run"]) == 0
    assert "predicted" in capsys.readouterr().out


def test_cli_lists_types_and_recipes(capsys: pytest.CaptureFixture[str]) -> None:
    """--list prints every type with its bits per weight, and the recipes."""
    assert main(["quantize", "--list"]) == 0
    out = capsys.readouterr().out
    assert "Q4_K_M" in out and "4.5000 bpw" in out and "recipe edge-layers-q8" in out
    q3 = {line.split()[0]: line for line in out.splitlines() if line.startswith("Q3_K_")}
    # llama-quantize's own notes tell the mixes apart (size, ppl increase)
    notes = {name: line.split("Q3_K - ")[0].split(None, 1)[1].strip() for name, line in q3.items()}
    assert len(set(notes.values())) == 3 and all("ppl" in n for n in notes.values())


@pytest.mark.parametrize("argv, message", [
    (["quantize", "x.gguf"], "usage: llamakit quantize"),
    (["quantize", "{src}", "{dst}", "Q9"], "unknown quantization type"),
    (["quantize", "{src}", "{src}", "Q8_0"], "source model itself"),
    (["quantize", "{src}", "{dst}", "Q8_0", "--tensor-type", "attn_q"], "PATTERN=TYPE"),
])
def test_cli_errors_are_one_line(f16_model: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str], argv: list[str],
                                 message: str) -> None:
    """Errors print 'llamakit: error: ...' and exit with 1, writing nothing."""
    args = [a.format(src=f16_model, dst=tmp_path / "out.gguf") for a in argv]
    assert main(args) == 1
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
