"""llama.cpp's log lines go to the 'llamakit.native' logger, never straight to stderr."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

import llamakit


@pytest.fixture
def restore_verbosity() -> Iterator[None]:
    before = llamakit.get_verbosity()
    yield
    llamakit.set_verbosity(before)


@pytest.mark.usefixtures("restore_verbosity")
def test_info_lines_reach_the_logger(tiny_model_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    """At INFO, loading a model logs llama.cpp's loader lines as whole lines."""
    llamakit.set_verbosity("info")
    with caplog.at_level(logging.INFO, logger="llamakit.native"):
        llamakit.load_model(tiny_model_path, backend="cpu").close()
    lines = [r.getMessage() for r in caplog.records if r.name == "llamakit.native"]
    assert any("llama_model_loader" in line or "print_info" in line for line in lines)
    assert all(not line.endswith("\n") for line in lines)


@pytest.mark.usefixtures("restore_verbosity")
def test_quiet_by_default_and_nothing_on_stderr(tiny_model_path: Path,
                                                capfd: pytest.CaptureFixture[str],
                                                caplog: pytest.LogCaptureFixture) -> None:
    """At the default level no INFO line is kept and the C side writes nothing to fd 2."""
    llamakit.set_verbosity(logging.WARNING)
    with caplog.at_level(logging.DEBUG, logger="llamakit.native"), \
            llamakit.load_model(tiny_model_path, backend="cpu") as model, \
            model.new_context(n_ctx=64) as ctx:
        ctx.generate("Hello", max_new_tokens=2, temperature=0)
    assert not [r for r in caplog.records
                if r.name == "llamakit.native" and r.levelno < logging.WARNING]
    captured = capfd.readouterr()
    assert captured.err == ""


@pytest.mark.usefixtures("restore_verbosity")
def test_set_verbosity_validates() -> None:
    """Levels are logging levels or their names; anything else is an error."""
    llamakit.set_verbosity("debug")
    assert llamakit.get_verbosity() == logging.DEBUG
    with pytest.raises(ValueError):
        llamakit.set_verbosity("loud")
    with pytest.raises(TypeError):
        llamakit.set_verbosity(None)  # type: ignore[arg-type]
