"""Progress bars: the [ui] progress setting, the bar, model loading and build output."""

from __future__ import annotations

import io
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import llamakit
from llamakit import _progress
from llamakit._build.variant import _run_logged
from llamakit._config import load_config
from llamakit._errors import ConfigError


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_process_default() -> None:
    _progress.set_default_mode(None)


def test_mode_follows_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """None means [ui] progress (environment here); True/False/names are explicit."""
    monkeypatch.setenv("LLAMAKIT_UI__PROGRESS", "never")
    assert _progress.resolve_mode(None) == "never"
    assert _progress.resolve_mode(True) == "auto" and _progress.resolve_mode(False) == "never"
    assert _progress.resolve_mode("always") == "always"
    _progress.set_default_mode("always")
    assert _progress.resolve_mode(None) == "always"
    with pytest.raises(ConfigError, match="progress must be"):
        _progress.resolve_mode("sometimes")
    with pytest.raises(ConfigError, match="progress"):
        load_config(env={"LLAMAKIT_UI__PROGRESS": "sometimes"})


def test_bar_only_where_the_mode_says() -> None:
    pipe, terminal = io.StringIO(), _Terminal()
    assert _progress.progress_bar("auto", "x", stream=pipe) is None
    assert _progress.progress_bar("auto", "x", stream=terminal) is not None
    assert _progress.progress_bar("always", "x", stream=pipe) is not None
    assert _progress.progress_bar("never", "x", stream=terminal) is None


def test_bar_draws_in_place_and_ends_its_line() -> None:
    stream = _Terminal()
    bar = _progress.ProgressBar(stream, "loading m.gguf", percent=True)
    bar(0.0, 1.0)
    bar(1.0, 1.0)
    bar.close()  # the line is already ended: nothing more
    text = stream.getvalue()
    assert text.startswith("\rloading m.gguf [" + "." * 24 + "]   0%")
    assert "\rloading m.gguf [" + "#" * 24 + "] 100%" in text
    assert text.endswith("\n") and text.count("\n") == 1
    stream = _Terminal()
    with _progress.ProgressBar(stream, "building cpu") as counted:
        counted(3, 12, "compile")
    assert "[######" + "." * 18 + "] 3/12 compile" in stream.getvalue()
    assert stream.getvalue().endswith("\n")  # closed half-way: the line still ends


def test_load_model_reports_progress(tiny_model_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    shares: list[float] = []
    with llamakit.load_model(tiny_model_path, backend="cpu", progress=shares.append):
        pass
    assert shares[-1] == 1.0 and shares == sorted(shares) and len(shares) > 2
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with llamakit.load_model(tiny_model_path, backend="cpu"):  # [ui] progress "auto"
        pass
    with llamakit.load_model(tiny_model_path, backend="cpu", progress=False):
        pass
    text = terminal.getvalue()
    assert text.count(f"\rloading {tiny_model_path.name} [") >= 2 and text.count("\n") == 1


def test_a_failing_progress_callback_stops_the_load(tiny_model_path: Path) -> None:
    def fail(share: float) -> None:
        if share > 0:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        llamakit.load_model(tiny_model_path, backend="cpu", progress=fail)


def test_ctrl_c_stops_a_load(tiny_model_path: Path) -> None:
    """SIGINT while llama.cpp loads stops it: KeyboardInterrupt after the C call returns."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("needs Python's default SIGINT handler")
    seen: list[float] = []

    def interrupt(share: float) -> None:
        seen.append(share)
        if len(seen) == 2:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        llamakit.load_model(tiny_model_path, backend="cpu", progress=interrupt)
    assert len(seen) == 2 and seen[-1] < 1.0  # no further progress once interrupted
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with llamakit.load_model(tiny_model_path, backend="cpu", progress=False) as model:
        assert model.n_vocab > 0  # and the next load works


def test_build_output_drives_the_bar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ninja's [done/total] lines reach the build bar (what `llamakit build` draws)."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    callback, bar = _progress.build_progress("auto", "cpu")
    assert callback is not None and bar is not None
    script = "print('[1/4] a'); print('noise'); print('[4/4] d')"
    _run_logged([sys.executable, "-c", script], cwd=None, env={}, log=tmp_path / "log",
                stage="compile", backend="cpu", progress=callback)
    bar.close()
    text = terminal.getvalue()
    assert "\rbuilding cpu [######" in text and "1/4 compile" in text
    assert "[" + "#" * 24 + "] 4/4 compile" in text and text.count("\n") == 1
    assert _progress.build_progress("never", "cpu") == (None, None)


def test_quantize_follows_the_setting(synthetic_model: Callable[..., Path], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    f16_model = synthetic_model(dtype="f16")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setenv("LLAMAKIT_UI__PROGRESS", "never")
    llamakit.quantize(f16_model, tmp_path / "a.gguf", "Q8_0")
    assert terminal.getvalue() == ""
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    llamakit.quantize(f16_model, tmp_path / "b.gguf", "Q8_0", progress="always")
    assert pipe.getvalue().startswith("\rquantizing ")
    with pytest.raises(llamakit.QuantizeError, match="progress"):
        llamakit.quantize(f16_model, tmp_path / "c.gguf", "Q8_0", progress="loud")
