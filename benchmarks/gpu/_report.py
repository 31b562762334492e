"""One markdown table of every ``bench-*.json`` that ``backends.py`` wrote in a folder
(the device scripts' ``report`` phase): per model, each llamakit backend's row, with
llama-bench's row right after the first (the backend it is compared with).

    python3 benchmarks/gpu/_report.py RESULTS_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def summary(folder: Path) -> str:
    rows = ["| model | size GiB | engine | pp512 tok/s | tg128 tok/s | pp / llama-bench | "
            "tg / llama-bench | tg share of bandwidth |", "| --- " * 8 + "|"]
    for path in sorted(folder.glob("bench-*.json")):
        report = json.loads(path.read_text())
        name = path.stem.removeprefix("bench-")
        bench = report.get("llama_bench")
        for index, row in enumerate(report["results"]):
            ratio = (f"{row['pp_ratio']:.2f} | {row['tg_ratio']:.2f}" if "pp_ratio" in row
                     else " | ")
            rows.append(f"| {name} | {row['size_bytes'] / 2**30:.2f} | llamakit "
                        f"{row['backend']} | {row['pp_tokens_per_s']:,.0f} | "
                        f"{row['tg_tokens_per_s']:,.1f} | {ratio} | "
                        f"{_share(row.get('tg_bandwidth_share'))} |")
            if bench and index == 0:
                rows.append(f"| {name} | {bench['model_size'] / 2**30:.2f} | llama-bench "
                            f"{bench['backends']} | {bench['pp_tokens_per_s']:,.0f} | "
                            f"{bench['tg_tokens_per_s']:,.1f} | 1 | 1 | "
                            f"{_share(bench.get('tg_bandwidth_share'))} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1])))
