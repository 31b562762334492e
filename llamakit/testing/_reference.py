"""A reference greedy decoder compiled straight against llama.cpp's C API.

``greedy_ref.c`` (shipped in this package) loads a model, decodes a prompt of token ids and
greedily samples with llama.cpp's own sampler, printing the ids. Greedy output of llamakit
must match it exactly on the same model and the same llama.cpp build.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence
from importlib.resources import as_file, files
from pathlib import Path

from .._errors import BuildError

__all__ = ["compile_greedy_reference", "greedy_reference_source", "run_greedy_reference"]

_PACKAGE = "llamakit.testing"
_SOURCE = "greedy_ref.c"
_BINARY = "greedy_ref"


def greedy_reference_source() -> str:
    """The C source of the reference decoder (``llamakit/testing/greedy_ref.c``)."""
    return files(_PACKAGE).joinpath(_SOURCE).read_text(encoding="utf-8")


def compile_greedy_reference(
    include_dir: Path | Sequence[Path],
    libraries: list[Path],
    link_args: list[str],
    out_dir: Path,
) -> Path:
    """Compile ``greedy_ref.c`` against a llama.cpp build; return the executable's path.

    Runs ``$CC`` (default ``cc``)::

        cc -O2 -I<include_dir>... greedy_ref.c -o <out_dir>/greedy_ref \\
            -Wl,--start-group <libraries> -Wl,--end-group <link_args> -lstdc++ -lm -lpthread

    Args:
        include_dir: the folder(s) holding ``llama.h`` and the ggml headers it includes
            (for a source tree: ``include/`` and ``ggml/include/``).
        libraries: the static (``.a``) or shared (``.so``) libraries to link, e.g.
            ``libllama.a``, ``libggml.a``, ``libggml-cpu.a``, ``libggml-base.a``. Folders
            of shared libraries are added as an rpath.
        link_args: extra linker arguments after the libraries, e.g. ``["-fopenmp"]`` for an
            OpenMP CPU build.
        out_dir: where the executable goes (created if missing). It replaces an existing
            one atomically.

    Raises:
        BuildError: the compiler failed; the message carries the command and its output.
    """
    includes = [include_dir] if isinstance(include_dir, (str, os.PathLike)) else include_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / _BINARY
    tmp = out_dir / f".{_BINARY}.{os.getpid()}.tmp"
    rpaths = sorted({str(Path(lib).resolve().parent) for lib in libraries
                     if ".so" in Path(lib).name})
    with as_file(files(_PACKAGE).joinpath(_SOURCE)) as source:
        command = [
            *shlex.split(os.environ.get("CC", "cc")),
            "-O2",
            *(f"-I{directory}" for directory in includes),
            str(source),
            "-o",
            str(tmp),
            "-Wl,--start-group",
            *(str(lib) for lib in libraries),
            "-Wl,--end-group",
            *(f"-Wl,-rpath,{directory}" for directory in rpaths),
            *link_args,
            "-lstdc++",
            "-lm",
            "-lpthread",
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True)
        except OSError as exc:
            raise BuildError(f"cannot run the C compiler ({command[0]}): {exc}") from exc
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise BuildError(
            f"compiling {_SOURCE} failed (exit {result.returncode}):\n"
            f"{shlex.join(command)}\n{output}"
        )
    os.replace(tmp, target)
    return target


def run_greedy_reference(
    binary: Path,
    model: Path,
    prompt_tokens: list[int],
    n_predict: int,
    n_ctx: int,
) -> list[int]:
    """Greedy-decode ``n_predict`` tokens after ``prompt_tokens`` with the reference binary.

    Returns the generated token ids, fewer than ``n_predict`` when an end-of-generation
    token came first (that token is not included).

    Raises:
        ValueError: ``prompt_tokens`` is empty, or ``n_predict``/``n_ctx`` are out of range.
        RuntimeError: the reference program failed; the message carries its stderr.
    """
    if not prompt_tokens:
        raise ValueError("prompt_tokens must not be empty")
    if n_predict < 0 or n_ctx <= 0:
        raise ValueError(f"need n_predict >= 0 and n_ctx > 0, got {n_predict} and {n_ctx}")
    command = [str(binary), str(model), str(n_predict), str(n_ctx),
               *(str(int(token)) for token in prompt_tokens)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"{binary.name} failed (exit {result.returncode}): {result.stderr.strip()[-4000:]}"
        )
    return [int(token) for token in result.stdout.split()]
