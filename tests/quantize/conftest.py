"""Fixtures of the quantization tests: a small F16 model whose rows fit every block size.

K-quants work on rows of 256 values and Q4_0/Q8_0 on 32, so ``n_embd`` and ``n_ff`` are
multiples of 256; two layers keep each quantization well under a second.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import llamakit

SHAPE = {"dtype": "f16", "n_embd": 256, "n_ff": 512, "n_head": 4, "n_head_kv": 2}


@pytest.fixture(scope="session")
def f16_model(synthetic_model: Callable[..., Path]) -> Path:
    """The F16 source model (llama-spm vocabulary, random weights)."""
    return synthetic_model(**SHAPE)


@pytest.fixture(scope="session")
def quantized(f16_model: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Callable[[str], llamakit.QuantizeResult]:
    """``quantized(ftype)``: ``f16_model`` quantized to ``ftype``, once per session."""
    folder = tmp_path_factory.mktemp("quantized")
    done: dict[str, llamakit.QuantizeResult] = {}

    def get(ftype: str) -> llamakit.QuantizeResult:
        if ftype not in done:
            done[ftype] = llamakit.quantize(f16_model, folder / f"{ftype}.gguf", ftype,
                                            progress=False)
        return done[ftype]

    return get


@pytest.fixture
def info_logging() -> Iterator[None]:
    """Lower the native log threshold to INFO for the test, restoring it afterwards."""
    before = llamakit.get_verbosity()
    llamakit.set_verbosity("info")
    try:
        yield
    finally:
        llamakit.set_verbosity(before)


_DECODE = """
import sys, llamakit
with llamakit.load_model(sys.argv[1], backend="cpu") as model:
    with model.new_context(n_ctx=64, n_threads=2) as ctx:
        ctx.generate("Hello", max_new_tokens=2, temperature=0)
"""


@pytest.fixture(scope="session")
def decodes_quantized(quantized: Callable[[str], llamakit.QuantizeResult]) -> None:
    """Fail (instead of killing the test run) where the CPU variant crashes on quantized
    weights: decoding them is tried once in a child process first."""
    path = quantized("Q8_0").dst
    done = subprocess.run([sys.executable, "-c", _DECODE, str(path)], capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        died = (f"died of {signal.Signals(-done.returncode).name}" if done.returncode < 0
                else f"exited with {done.returncode}")
        pytest.fail(
            f"decoding a quantized model {died} in the CPU variant. On hosts with AMX "
            "(Sapphire Rapids, seen in VMs) llama.cpp's AMX kernels segfault: "
            "ggml-org/llama.cpp#20824; build the CPU variant without AMX or load models "
            f"with use_extra_bufts=false.\n{done.stderr[-1500:]}", pytrace=False)
