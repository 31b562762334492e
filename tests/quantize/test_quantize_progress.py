"""Progress through llama.cpp's log lines, the terminal bar, and output atomicity."""

from __future__ import annotations

import io
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

import llamakit
from llamakit._backends import resolve_backend


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_progress_callback_sees_every_tensor(f16_model: Path, tmp_path: Path) -> None:
    """A callable progress gets (done, total, name) once per tensor, in order."""
    calls: list[tuple[int, int, str]] = []
    result = llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q8_0",
                               progress=lambda *args: calls.append(args))
    assert [c[0] for c in calls] == list(range(1, result.n_tensors + 1))
    assert {c[1] for c in calls} == {result.n_tensors}
    assert sorted(c[2] for c in calls) == sorted(result.tensor_types)


def test_bar_is_drawn_on_a_terminal(f16_model: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """progress=True draws a one-line bar on stderr when it is a terminal."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    result = llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q8_0")
    text = terminal.getvalue()
    assert text.startswith("\rquantizing ") and text.endswith("\n")
    assert f"{result.n_tensors}/{result.n_tensors}" in text and "#" * 24 in text
    assert text.count("\n") == 1


@pytest.mark.parametrize("progress", [True, False])
def test_no_bar_without_a_terminal(f16_model: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch, progress: bool) -> None:
    """Nothing is drawn when stderr is not a terminal, or with progress=False."""
    pipe = _Terminal() if not progress else _Pipe()
    monkeypatch.setattr(sys, "stderr", pipe)
    llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q8_0", progress=progress)
    assert pipe.getvalue() == ""


def test_listener_sees_info_lines_the_logger_does_not(
        caplog: pytest.LogCaptureFixture) -> None:
    """A log listener gets llama.cpp's INFO lines while the WARNING threshold hides them."""
    native = resolve_backend("cpu")
    lines: list[tuple[int, str]] = []
    assert llamakit.get_verbosity() == logging.WARNING
    with caplog.at_level(logging.DEBUG, logger="llamakit.native"), \
            native.log_listener(lambda level, line: lines.append((level, line))):
        native._on_log(2, b"hello ")  # INFO, in two pieces
        native._on_log(5, b"world\n")  # CONT
    native._on_log(2, b"unheard\n")
    assert lines == [(logging.INFO, "hello world")]
    assert not [r for r in caplog.records if "hello" in r.getMessage()]


def test_failed_quantization_leaves_the_destination_alone(f16_model: Path,
                                                          tmp_path: Path) -> None:
    """When the run fails the old dst stays as it was and no temporary file remains."""
    target = tmp_path / "model.gguf"
    target.write_bytes(b"previous content")

    def fail(done: int, total: int, name: str) -> None:
        raise RuntimeError(f"stop at {name}")

    with pytest.raises(RuntimeError, match="stop at"):
        llamakit.quantize(f16_model, target, "Q8_0", progress=fail)
    assert target.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signals reach the main thread only")
def test_ctrl_c_is_raised_when_llama_cpp_returns(f16_model: Path, tmp_path: Path) -> None:
    """SIGINT during the run becomes KeyboardInterrupt afterwards, with no output."""
    def interrupt(done: int, total: int, name: str) -> None:
        if done == 1:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        llamakit.quantize(f16_model, tmp_path / "out.gguf", "Q8_0", progress=interrupt)
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_two_threads_quantize_at_once(f16_model: Path, tmp_path: Path) -> None:
    """Concurrent calls each see only their own progress and both succeed."""
    seen: dict[str, list[int]] = {"a": [], "b": []}
    results: dict[str, llamakit.QuantizeResult] = {}

    def run(key: str) -> None:
        results[key] = llamakit.quantize(
            f16_model, tmp_path / f"{key}.gguf", "Q8_0", nthread=1,
            progress=lambda done, total, name: seen[key].append(done))

    threads = [threading.Thread(target=run, args=(k,)) for k in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results["a"].size == results["b"].size
    assert seen["a"] == seen["b"] == list(range(1, results["a"].n_tensors + 1))
