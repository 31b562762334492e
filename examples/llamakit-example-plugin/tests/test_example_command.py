"""``llamakit example-stats MODEL``: the plugin's command on the llamakit command line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import llamakit
import pytest
from llamakit._plugins.cli import add_plugin_subcommands

from llamakit_example_plugin import model_stats


def parser() -> argparse.ArgumentParser:
    """A command line with the plugins' subcommands, as llamakit's own builds it."""
    root = argparse.ArgumentParser(prog="llamakit")
    root.add_argument("--backend", default=None)
    add_plugin_subcommands(root.add_subparsers(dest="command", required=True), {"info"})
    return root


def test_stats_of_a_synthetic_model(synthetic_model: Callable[..., Path],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = synthetic_model(dtype="f16")
    args = parser().parse_args(["example-stats", str(path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    header, columns, *rows = out.splitlines()
    summary, stats = model_stats(path)
    assert header.startswith(f"{path.name}: llama, GGUF v3, {summary.n_kv} metadata keys, "
                             f"{summary.n_tensors} tensors")
    assert columns.split() == ["type", "tensors", "parameters", "MiB", "bpw", "share"]
    by_type = {row.split()[0]: row.split() for row in rows}
    assert set(by_type) == {"f16", "f32"}
    assert by_type["f16"][4] == "16.00" and by_type["f32"][4] == "32.00"
    assert sum(int(row[1]) for row in by_type.values()) == summary.n_tensors
    n_params = sum(s.elements for s in stats)
    assert f"{n_params:,} parameters" in header


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a model at all" * 8)
    args = parser().parse_args(["example-stats", str(bogus)])
    with pytest.raises(llamakit.GGUFFormatError, match="GGUF"):
        args.func(args)


def test_listed_by_llamakit_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["plugins"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    block = out.split("llamakit-example-plugin  [llamakit-example-plugin 0.1.0]")[1]
    assert "    samplers: no_repeat_ngram\n" in block
    assert "    chat templates: example-plain\n" in block
    assert "    quantization recipes: example-attn-q8\n" in block
    assert "    commands: example-stats\n" in block


def test_python_m_llamakit_runs_it(synthetic_model: Callable[..., Path]) -> None:
    """The real command line, in a fresh process, finds the installed plugin's command."""
    path = synthetic_model()
    run = subprocess.run([sys.executable, "-m", "llamakit", "example-stats", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    summary, stats = model_stats(path)
    assert run.stdout.startswith(f"{path.name}: llama, GGUF v{summary.version}, ")
    assert [line.split()[0] for line in run.stdout.splitlines()[2:]] == [s.type for s in stats]
    missing = subprocess.run([sys.executable, "-m", "llamakit", "example-stats",
                              str(path.with_name("missing.gguf"))],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1
    assert missing.stderr.startswith("llamakit: error: ") and "missing.gguf" in missing.stderr
