"""``llamakit example-stats MODEL``: how a GGUF model's weights are stored, by tensor type.

The file is checked with :func:`llamakit.validate_gguf` first, so a damaged or foreign file
is a clear ``GGUFFormatError`` rather than a crash of the reader.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import llamakit

__all__ = ["TypeStats", "configure", "model_stats", "run"]


@dataclass(frozen=True)
class TypeStats:
    """The tensors of one ggml type in a model."""

    type: str
    tensors: int
    elements: int
    n_bytes: int

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.n_bytes / self.elements if self.elements else 0.0


def model_stats(path: str | os.PathLike[str]) -> tuple[llamakit.GGUFSummary, list[TypeStats]]:
    """The file's summary and its tensors grouped by type, largest share first."""
    summary = llamakit.validate_gguf(path)
    from gguf import GGUFReader  # imported on use: the CLI lists commands without loading it

    grouped: dict[str, list[int]] = {}
    for tensor in GGUFReader(Path(path)).tensors:
        entry = grouped.setdefault(tensor.tensor_type.name.lower(), [0, 0, 0])
        entry[0] += 1
        entry[1] += int(tensor.n_elements)
        entry[2] += int(tensor.n_bytes)
    stats = [TypeStats(name, *values) for name, values in grouped.items()]
    stats.sort(key=lambda s: (-s.n_bytes, s.type))
    return summary, stats


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a GGUF file")


def run(args: argparse.Namespace) -> int:
    summary, stats = model_stats(args.model)
    total_elements = sum(s.elements for s in stats)
    total_bytes = sum(s.n_bytes for s in stats)
    print(f"{summary.path.name}: {summary.architecture or 'unknown architecture'}, "
          f"GGUF v{summary.version}, {summary.n_kv} metadata keys, {summary.n_tensors} tensors, "
          f"{total_elements:,} parameters in {total_bytes / 2**20:.2f} MiB "
          f"({8 * total_bytes / max(total_elements, 1):.2f} bits per weight)")
    print(f"{'type':8} {'tensors':>7} {'parameters':>12} {'MiB':>9} {'bpw':>6} {'share':>6}")
    for s in stats:
        print(f"{s.type:8} {s.tensors:7d} {s.elements:12,d} {s.n_bytes / 2**20:9.2f} "
              f"{s.bits_per_weight:6.2f} {100 * s.n_bytes / max(total_bytes, 1):5.1f}%")
    return 0
