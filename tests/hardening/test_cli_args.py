"""Class 9 of issue 21: the command line takes -p/--prompt, flags between MODEL and the
text, and routes llama.cpp's loader notices through logging under -q/--verbose."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import llamakit
from llamakit import _logging


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("LLAMAKIT_") and "__" in k)
           and k not in ("LLAMAKIT_CONFIG", "LLAMAKIT_MODEL")}
    env.update(LLAMAKIT_BACKEND="cpu", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "llamakit", *args], capture_output=True,
                          text=True, timeout=120, env=env, check=False)


def test_prompt_flag_and_intermixed_flags(tiny_model_path: Path) -> None:
    """-p/--prompt works, and flags between MODEL and PROMPT parse, greedy output equal."""
    model = str(tiny_model_path)
    common = ("--max-new-tokens", "3", "--no-echo", "-q")
    positional = run("generate", model, "--temperature", "0", "Hello there", *common)
    flagged = run("generate", model, "-p", "Hello there", "--temperature", "0", *common)
    long_flag = run("generate", "--prompt", "Hello there", model, "--temperature=0", *common)
    for proc in (positional, flagged, long_flag):
        assert proc.returncode == 0, proc.stderr
    assert positional.stdout == flagged.stdout == long_flag.stdout
    assert positional.stderr == ""  # -q: no summary line
    both = run("generate", model, "-p", "a", "b")
    assert both.returncode == 1 and "give the prompt once" in both.stderr


def test_embed_takes_texts_after_its_flags(tiny_model_path: Path) -> None:
    """embed MODEL --format lines "a" "b" embeds both texts."""
    proc = run("embed", str(tiny_model_path), "--format", "lines", "a", "b")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 2
    proc = run("embed", str(tiny_model_path), "a", "--format", "json", "b")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 2


def test_unknown_flags_are_still_refused(tiny_model_path: Path) -> None:
    """A misspelt flag is a usage error (status 2), not a prompt word."""
    proc = run("generate", str(tiny_model_path), "Hi", "--temprature", "0")
    assert proc.returncode == 2
    assert "unrecognized arguments: --temprature" in proc.stderr


@pytest.mark.parametrize("line", [
    "load: control-looking token:    106 '<end_of_turn>' was not control-type; this is "
    "probably a bug in the model. its type will be overridden",
    "llama_kv_cache_iswa: using full-size SWA cache (ref: https://example.org)"])
def test_loader_notices_are_info_not_warnings(model: llamakit.Model, line: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Known loader notices are logged at INFO: hidden by default, shown with --verbose."""
    native = model._handle.native
    previous = _logging.get_verbosity()
    try:
        with caplog.at_level(logging.DEBUG, logger="llamakit.native"):
            _logging.set_verbosity(logging.WARNING)
            native._on_log(3, (line + "\n").encode())
            assert not [r for r in caplog.records if line in r.getMessage()]
            _logging.set_verbosity(logging.INFO)
            native._on_log(3, (line + "\n").encode())
            found = [r for r in caplog.records if line in r.getMessage()]
            assert [r.levelno for r in found] == [logging.INFO]
            native._on_log(3, b"llama_model_load: some other warning\n")
            assert caplog.records[-1].levelno == logging.WARNING
    finally:
        _logging.set_verbosity(previous)


def test_quiet_and_verbose_set_the_native_log_level(tiny_model_path: Path) -> None:
    """--verbose shows llama.cpp's INFO lines on stderr; -q shows none of them."""
    model = str(tiny_model_path)
    verbose = run("generate", model, "-p", "Hi", "--max-new-tokens", "1", "--verbose")
    quiet = run("generate", model, "-p", "Hi", "--max-new-tokens", "1", "-q")
    assert verbose.returncode == quiet.returncode == 0
    assert "llamakit.native" in verbose.stderr
    assert quiet.stderr == ""
