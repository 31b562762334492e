"""Class 1 of issue 21: closing and sharing objects across threads never crashes.

Each scenario runs in its own process (``thread_worker.py``): a regression here is a
use-after-free, which kills the process by a signal; the test counts that as a failure
instead of losing the whole run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from llamakit.testing import write_lora_adapter

WORKER = Path(__file__).with_name("thread_worker.py")


def _run(scenario: str, model: Path, lora: Path | None = None) -> list[str]:
    args = [sys.executable, str(WORKER), scenario, str(model)]
    if lora is not None:
        args.append(str(lora))
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        pytest.fail(f"{scenario}: the process died by {name}\n{proc.stderr[-3000:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return seen


@pytest.fixture(scope="module")
def lora_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lora_adapter(tmp_path_factory.mktemp("threads") / "a.gguf", seed=1)


@pytest.mark.parametrize("target", ["context", "model", "lora"])
def test_close_while_another_thread_generates(tiny_model_path: Path, lora_path: Path,
                                              target: str) -> None:
    """Closing the model, context or applied adapter under a running stream never crashes;
    the streaming thread gets ClosedError or AbortedError."""
    seen = _run(f"close-{target}", tiny_model_path, lora_path)
    assert seen and set(seen) <= {"ClosedError", "AbortedError"}, seen


@pytest.mark.parametrize("target", ["context", "model"])
def test_close_while_another_thread_samples_in_the_graph(tiny_model_path: Path,
                                                         target: str) -> None:
    """The same with backend_sampling: the chain attached to the context is freed after
    it, whichever moment the close lands in."""
    seen = _run(f"close-{target}-graph", tiny_model_path)
    assert seen and set(seen) <= {"ClosedError", "AbortedError"}, seen


def test_abandoned_stream_does_not_block_other_threads(tiny_model_path: Path) -> None:
    """A stream half read by an ended thread yields the context; resuming it is refused."""
    assert _run("abandoned", tiny_model_path) == ["generated:4", "ContextBusyError",
                                                  "again:2"]


def test_interleaved_streams_in_one_thread(tiny_model_path: Path) -> None:
    """A second call while this thread's stream is open is ContextBusyError; the open
    stream's output stays what it is alone."""
    assert _run("interleaved", tiny_model_path) == ["ContextBusyError", "ContextBusyError",
                                                    "same", "after:2"]


def test_kept_candidates_never_reach_native_memory(tiny_model_path: Path) -> None:
    """A Python sampler writing into Candidates kept from earlier calls changes nothing."""
    assert _run("candidates", tiny_model_path) == ["same", "kept:16"]


def test_contexts_of_one_model_in_threads_match_serial_runs(tiny_model_path: Path) -> None:
    """Four contexts of one model in four threads give the tokens of a serial run."""
    assert _run("threads", tiny_model_path) == ["same"]


def test_close_from_inside_a_sampling_callback(tiny_model_path: Path) -> None:
    """A sampler stage that closes its context or model mid-call gets ClosedError after."""
    assert _run("callback", tiny_model_path) == ["ClosedError", "ClosedError"]
