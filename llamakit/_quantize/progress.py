"""Following llama.cpp's quantizer through its log lines, and the terminal progress bar.

While it works, llama.cpp logs one INFO line per tensor::

    [   3/  19]                blk.0.attn_q.weight - [  256,   256,     1,     1], type =    f16,
        converting to q4_K .. size =     0.12 MiB ->     0.04 MiB

(a dry run ends the line with ``(q4_K)`` instead). ``NativeLib.log_listener`` hands those
lines over whatever the log threshold, so progress costs one regex per line.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import TextIO

from .._progress import ProgressBar

__all__ = ["ProgressCallback", "TensorLog", "TerminalBar"]

ProgressCallback = Callable[[int, int, str], None]
"""Called as ``(tensors_done, n_tensors, tensor_name)`` after each tensor."""

_TENSOR = re.compile(r"\[\s*(\d+)/\s*(\d+)\]\s+(\S+)\s+- \[")
_DRY_TARGET = re.compile(r"MiB \((\w+)\)\s*$")


class TensorLog:
    """Listener for one ``llama_model_quantize`` call: per-tensor progress and, in a dry
    run, the type llama.cpp chose for each tensor. Lines of other threads are ignored."""

    def __init__(self, on_tensor: ProgressCallback | None) -> None:
        self.on_tensor = on_tensor
        self.thread = threading.get_ident()
        self.done = 0
        self.total = 0
        self.targets: dict[str, str] = {}
        self.error: BaseException | None = None

    def __call__(self, level: int, line: str) -> None:
        if threading.get_ident() != self.thread:
            return
        match = _TENSOR.search(line)
        if match is None:
            return
        self.done, self.total, name = int(match.group(1)), int(match.group(2)), match.group(3)
        target = _DRY_TARGET.search(line, match.end())
        if target is not None:
            self.targets[name] = target.group(1)
        if self.on_tensor is not None and self.error is None:
            # An exception cannot cross llama.cpp's C frames: keep it for after the call.
            try:
                self.on_tensor(self.done, self.total, name)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
                self.error = exc


class TerminalBar(ProgressBar):
    """The quantizer's bar: ``quantizing NAME [####....] done/total tensor``."""

    def __init__(self, stream: TextIO, label: str) -> None:
        super().__init__(stream, label)
