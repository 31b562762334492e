"""``llamakit chat``: --chat-template takes built-in names and files; Ctrl-C during a reply
stops the reply and the chat goes on with the conversation so far."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

TIMEOUT = 120


def _env() -> dict[str, str]:
    return {**os.environ, "LLAMAKIT_BACKEND": "cpu", "PYTHONUNBUFFERED": "1"}


def _chat(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llamakit", "chat", *args], input=stdin,
                          capture_output=True, text=True, env=_env(), timeout=TIMEOUT)


@pytest.mark.parametrize("how", ["builtin", "file"])
def test_chat_template_names_and_files(tiny_model_path: Path, templates_dir: Path,
                                       how: str) -> None:
    template = "gemma" if how == "builtin" else \
        str(templates_dir / "google-gemma-2-2b-it.jinja")
    proc = _chat(str(tiny_model_path), "--chat-template", template, "--show-prompt",
                 "--max-new-tokens", "3", "--temperature", "0", stdin="Hi\n/history\n")
    assert proc.returncode == 0, proc.stderr
    assert "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n" in proc.stderr
    history = json.loads(proc.stdout[proc.stdout.index("["):])
    assert [m["role"] for m in history] == ["user", "assistant"]


def test_chat_template_unknown_name(tiny_model_path: Path) -> None:
    proc = _chat(str(tiny_model_path), "--chat-template", "no-such-format",
                 "--max-new-tokens", "3", stdin="Hi\n")
    assert proc.returncode != 0
    assert "no-such-format" in proc.stderr and "Traceback" not in proc.stderr


def test_ctrl_c_stops_the_reply_not_the_chat(tiny_model_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llamakit", "chat", str(tiny_model_path), "--chat-template",
         "chatml", "--max-new-tokens", "200000", "--n-ctx", "200000", "--temperature", "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(b"Go on forever\n")
    proc.stdin.flush()
    first = proc.stdout.read(1)
    assert first  # the reply is streaming
    proc.send_signal(signal.SIGINT)
    proc.stdin.write(b"/history\n/exit\n")
    proc.stdin.flush()
    proc.stdin.close()
    assert proc.wait(timeout=TIMEOUT) == 0
    out = (first + proc.stdout.read()).decode("utf-8", "replace")
    err = proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    assert "Traceback" not in err
    history = json.loads(out[out.index("\n[") + 1:])
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[0]["content"] == "Go on forever"
    assert history[1]["content"]  # what was said before Ctrl-C stays
