"""The ``llamakit`` command line, run as ``python -m llamakit`` in subprocesses.

Each launch costs about a second of imports, so each test checks several things of one run.
In-process checks of the parser (flags derived from the schema) are in test_cli_options.py.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import llamakit
from llamakit._cli import BUILTIN_COMMANDS

TIMEOUT = 120


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("LLAMAKIT_") and "__" in k)
           and k not in ("LLAMAKIT_CONFIG", "LLAMAKIT_MODEL")}
    env.update({"LLAMAKIT_BACKEND": "cpu", "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def run(*args: str, stdin: str | None = None, cwd: Path | None = None,
        **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llamakit", *args], input=stdin,
                          capture_output=True, text=True, timeout=TIMEOUT, env=_env(**env),
                          cwd=cwd)


def one_error_line(proc: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The run failed with ``code`` and said so in one line, without a traceback."""
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("llamakit: error: ")
    assert "Traceback" not in proc.stderr
    return lines[0]


SAMPLING = ["--temperature", "0", "--n-ctx", "256", "--n-batch", "64", "--n-threads", "2"]


def test_help_lists_every_command() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for command in (*BUILTIN_COMMANDS, "plugins"):
        assert f"    {command} " in proc.stdout, command


def test_backends_and_devices() -> None:
    proc = run("backends", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = {b["name"]: b for b in json.loads(proc.stdout)}
    assert listed["cpu"]["available"] is True and listed["cpu"]["devices"]
    proc = run("devices")
    assert proc.returncode == 0, proc.stderr
    assert any(line.startswith("cpu ") and " cpu " in line for line in proc.stdout.splitlines())


def test_info_reports_shape_vocab_template_and_tensor_types(tiny_model_path: Path) -> None:
    proc = run("info", str(tiny_model_path), "--json", "--tensors", "--tokenize", "Hello world")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["architecture"], report["n_layer"], report["n_embd"]) == ("llama", 2, 64)
    assert report["n_head"] == 4 and report["n_head_kv"] == 2 and report["n_ctx_train"] == 2048
    assert report["vocab"]["bos"] == {"id": 1, "text": "<s>"}
    assert report["chat_template"] is None
    assert report["tensor_types"]["f32"]["tensors"] == len(report["tensors"]) == 21
    with llamakit.load_model(tiny_model_path, backend="cpu", vocab_only=True) as model:
        expected = model.tokenize("Hello world")
    assert [t["id"] for t in report["tokens"]] == expected
    text = run("info", str(tiny_model_path)).stdout
    assert "n_layer      2" in text and "f32 21" in text and "no chat template" in text


def test_generate_streams_what_the_api_generates(tiny_model_path: Path,
                                                 model: llamakit.Model) -> None:
    proc = run("generate", str(tiny_model_path), "Once upon a time", "--max-new-tokens", "6",
               *SAMPLING)
    assert proc.returncode == 0, proc.stderr
    with model.new_context(n_ctx=256, n_batch=64, n_threads=2) as ctx:
        expected = ctx.generate("Once upon a time", max_new_tokens=6, temperature=0).text
    assert proc.stdout == f"Once upon a time{expected}\n"
    assert "6 generated" in proc.stderr and "backend cpu" in proc.stderr
    assert "loading" not in proc.stderr  # no progress bar when stderr is not a terminal


def test_generate_from_a_config_file_and_stdin(tiny_model_path: Path, tmp_path: Path) -> None:
    """--config names the model and sampling; flags override it; the prompt is read from
    stdin; the environment sits between the file and the flags."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.gguf").symlink_to(tiny_model_path)
    config = tmp_path / "llamakit.toml"
    config.write_text('[model]\npath = "models/m.gguf"\n[sampling]\ntemperature = 0\n'
                      "max_new_tokens = 50\n")
    proc = run("--config", str(config), "generate", "--max-new-tokens", "3", "--no-echo", "-q",
               stdin="The sky", cwd=tmp_path.parent, LLAMAKIT_CONTEXT__N_CTX="128")
    assert proc.returncode == 0, proc.stderr
    with llamakit.load_model(tiny_model_path, backend="cpu") as model, \
            model.new_context(n_ctx=128) as ctx:
        expected = ctx.generate("The sky", max_new_tokens=3, temperature=0).text
    assert proc.stdout == expected + "\n" and proc.stderr == ""


def test_chat_keeps_history_over_piped_stdin(tiny_model_path: Path,
                                             model: llamakit.Model) -> None:
    """Each line is a turn; the second turn's prompt holds the first exchange; /reset
    forgets it; the replies are what Context.chat gives for the same conversation."""
    lines = "Hello\nHow are you?\n/reset\nAgain\n/exit\nnever read\n"
    proc = run("chat", str(tiny_model_path), "--system", "Be brief.", "--show-prompt",
               "--max-new-tokens", "5", *SAMPLING, stdin=lines)
    assert proc.returncode == 0, proc.stderr
    prompts = [part.split("--- reply ---")[0] for part in proc.stderr.split("--- prompt ---")[1:]]
    assert len(prompts) == 3
    with model.new_context(n_ctx=256, n_batch=64, n_threads=2) as ctx:
        system = {"role": "system", "content": "Be brief."}
        messages = [system, {"role": "user", "content": "Hello"}]
        first = ctx.chat(messages, max_new_tokens=5, temperature=0)
        messages += [first.message, {"role": "user", "content": "How are you?"}]
        second = ctx.chat(messages, max_new_tokens=5, temperature=0)
        third = ctx.chat([system, {"role": "user", "content": "Again"}], max_new_tokens=5,
                         temperature=0)
    assert proc.stdout == f"{first.content}\n{second.content}\n{third.content}\n"
    assert prompts[0].strip() == first.prompt.strip()
    assert prompts[1].strip() == second.prompt.strip()
    assert prompts[2].strip() == third.prompt.strip()
    assert "Hello" in prompts[1] and first.content in prompts[1]
    assert "Hello" not in prompts[2] and "Be brief." in prompts[2]


def test_embed_prints_unit_vectors(tiny_model_path: Path, model: llamakit.Model) -> None:
    proc = run("embed", str(tiny_model_path), "a cat", "a dog", "--pooling", "mean")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["text"] for r in rows] == ["a cat", "a dog"]
    vectors = np.array([r["embedding"] for r in rows])
    assert vectors.shape == (2, 64)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with model.new_context(embeddings=True, pooling="mean") as ctx:
        expected = ctx.embeddings(["a cat", "a dog"])
    assert np.allclose(vectors, expected, atol=1e-5)
    lines = run("embed", str(tiny_model_path), "--format", "lines", "--no-normalize",
                stdin="first\n\nsecond\n").stdout.splitlines()
    assert len(lines) == 2 and len(lines[0].split()) == 64


def test_bench_prints_a_table(tiny_model_path: Path) -> None:
    proc = run("bench", str(tiny_model_path), "-p", "8,16", "-n", "4", "-r", "2",
               "--n-threads", "1")
    assert proc.returncode == 0, proc.stderr
    rows = [[cell.strip() for cell in line.split("|")[1:-1]]
            for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == ["model", "size", "params", "backend", "ngl", "threads", "n_batch", "test",
                       "t/s"]
    assert [row[7] for row in rows[2:]] == ["pp8", "pp16", "tg4"]
    for row in rows[2:]:
        assert row[3] == "cpu" and row[5] == "1"
        mean, spread = row[8].split("±")
        assert float(mean) > 0 and float(spread) >= 0


def test_config_show_names_where_each_value_came_from(tmp_path: Path) -> None:
    config = tmp_path / "llamakit.toml"
    config.write_text("[context]\nn_ctx = 1024\n[sampling]\ntop_k = 5\n")
    proc = run("config", "show", "--config", str(config), "--top-k", "7", "--json",
               LLAMAKIT_SAMPLING__TEMPERATURE="0.3")
    assert proc.returncode == 0, proc.stderr
    settings = {s["key"]: s for s in json.loads(proc.stdout)["settings"]}
    assert settings["context.n_ctx"] == {"key": "context.n_ctx", "value": 1024,
                                         "origin": f"config file {config}"}
    assert settings["sampling.top_k"]["value"] == 7
    assert settings["sampling.top_k"]["origin"] == "command-line flag --top-k"
    assert settings["sampling.temperature"]["origin"] == \
        "environment variable LLAMAKIT_SAMPLING__TEMPERATURE"
    assert settings["sampling.top_p"]["origin"] == "default"
    assert settings["ui.progress"]["value"] == "auto"


def test_config_validate(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text('[sampling]\ntemperature = 0.5\n[ui]\nprogress = "never"\n')
    bad.write_text("[sampling]\ntemprature = 0.5\n")
    proc = run("config", "validate", str(good))
    assert proc.returncode == 0 and proc.stdout == f"{good}: valid\n"
    line = one_error_line(run("config", "validate", str(bad)))
    assert "sampling.temprature" in line and "did you mean 'sampling.temperature'" in line


@pytest.mark.parametrize("args, message, code", [
    (["generate", "{missing}", "hi"], "model file not found", 1),
    (["generate", "{model}", "hi", "--n-ctx", "many"], "argument --n-ctx: invalid int", 2),
    (["generate", "{model}", "hi", "--top-p", "1.5"], "(command-line flag --top-p)", 1),
    (["--config", "{bad}", "chat", "{model}"], "context.n_ctx = -1", 1),
    (["info"], "no model given", 1),
    (["generate", "{model}", "hi", "--logit-bias", "{{1: 2}}"], "not JSON", 2),
])
def test_bad_input_is_one_line(tiny_model_path: Path, tmp_path: Path, args: list[str],
                               message: str, code: int) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[context]\nn_ctx = -1\n")
    values = {"missing": tmp_path / "missing.gguf", "model": tiny_model_path, "bad": bad}
    line = one_error_line(run(*[a.format(**values) for a in args]), code)
    assert message in line


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = run("--debug", "info", str(tmp_path / "missing.gguf"))
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ModelNotFoundError" in proc.stderr
    assert proc.stderr.rstrip().endswith("model file not found: " + str(tmp_path / "missing.gguf"))


def test_plugins_and_build() -> None:
    proc = run("plugins")
    assert proc.returncode == 0, proc.stderr
    assert "loaded" in proc.stdout.splitlines()[0]
    proc = run("build", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("cpu: ") and proc.stdout.strip().endswith(".so")
    one_error_line(run("build", "nonesuch"))


def _read_all(fd: int, proc: subprocess.Popen[bytes]) -> bytes:
    """Everything written to the pty until the process exits and the pty is drained."""
    out = b""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def test_progress_bar_on_a_terminal_only(tiny_model_path: Path, tmp_path: Path) -> None:
    """Model loading and quantizing draw a bar when stderr is a terminal (--progress auto);
    --progress never (or piping, see the other tests) draws none."""
    target = tmp_path / "q.gguf"
    shown: list[str] = []
    for mode in ("auto", "never"):
        master, slave = pty.openpty()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "llamakit", "--progress", mode, "generate",
                 str(tiny_model_path), "hi", "--max-new-tokens", "1", "-q"],
                stdout=subprocess.PIPE, stderr=slave, env=_env())
            os.close(slave)
            shown.append(_read_all(master, proc).decode(errors="replace"))
            assert proc.wait(timeout=TIMEOUT) == 0
            assert proc.stdout is not None
            proc.stdout.close()
        finally:
            os.close(master)
    assert f"\rloading {tiny_model_path.name} [" in shown[0] and "100%" in shown[0]
    assert shown[1] == ""
    proc = run("quantize", str(tiny_model_path), str(target), "Q8_0", "--progress", "always")
    assert proc.returncode == 0, proc.stderr
    # (text mode reads the bar's \r as a line end)
    assert "[########################] 21/21" in proc.stderr and proc.stderr.endswith("\n")


def test_ctrl_c_stops_generation_with_status_130(tiny_model_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llamakit", "generate", str(tiny_model_path), "Go",
         "--max-new-tokens", "200000", "--n-ctx", "200000", "--temperature", "0", "--no-echo"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(1)  # generating
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=TIMEOUT) == 130
    err = proc.stderr.read().decode()
    assert "interrupted" in err and "Traceback" not in err
    proc.stdout.close()
    proc.stderr.close()
