#!/usr/bin/env bash
# Multi-GPU split (issue 15) on a machine with two or more GPUs, one command:
#
#     benchmarks/gpu/multi_gpu.sh MODEL.gguf [BACKEND]       # BACKEND: cuda (default) or vulkan
#
# Runs tests/multigpu (greedy tokens of every split equal one GPU's), then measures pp512
# and tg128 with `llamakit bench` for one GPU (split_mode none) and two (layer, layer with
# tensor_split 3,1, and on cuda row and row 3,1), each beside llama-bench with the same
# split (-sm/-ts), if LLAMA_BENCH points at one built from the same tree (gpu/cuda.sh and
# gpu/vulkan.sh build it). Results (JSON per run, summary.md) go to $WORK/results
# (default /tmp/lk-multigpu) and to $OUT when it is set. Not run yet: no multi-GPU machine
# had been lent when it was written; expect to adjust it on the first run.
set -euo pipefail

MODEL=${1:?usage: benchmarks/gpu/multi_gpu.sh MODEL.gguf [cuda|vulkan]}
BACKEND=${2:-cuda}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
WORK=${WORK:-/tmp/lk-multigpu}
RESULTS=$WORK/results
REPS=${REPS:-5}
LLAMA_BENCH=${LLAMA_BENCH:-}
mkdir -p "$RESULTS"

"$PY" -m pytest -q -p no:cacheprovider tests/multigpu 2>&1 | tee "$RESULTS/tests.log" || true

# name | llamakit flags | llama-bench flags
configs=("1gpu|--split-mode none --main-gpu 0|-sm none -mg 0"
         "layer|--split-mode layer|-sm layer"
         "layer-3-1|--split-mode layer --tensor-split 3,1|-sm layer -ts 3/1")
if [ "$BACKEND" = cuda ]; then
    configs+=("row|--split-mode row|-sm row" "row-3-1|--split-mode row --tensor-split 3,1|-sm row -ts 3/1")
fi
for config in "${configs[@]}"; do
    IFS='|' read -r name ours theirs <<< "$config"
    echo "=== $name"
    # shellcheck disable=SC2086
    "$PY" -m llamakit bench "$MODEL" --backend "$BACKEND" --n-gpu-layers -1 $ours \
        -p 512 -n 128 -r "$REPS" -o json > "$RESULTS/llamakit-$name.json"
    if [ -n "$LLAMA_BENCH" ]; then
        # shellcheck disable=SC2086
        "$LLAMA_BENCH" -m "$MODEL" -p 512 -n 128 -r "$REPS" -ngl 99 $theirs -o json \
            > "$RESULTS/llama-bench-$name.json"
    fi
done

"$PY" - "$RESULTS" <<'PYEOF' | tee "$RESULTS/summary.md"
import json, sys
from pathlib import Path

folder = Path(sys.argv[1])
print("| split | llamakit pp512 | llamakit tg128 | llama-bench pp512 | llama-bench tg128 |")
print("| --- | --- | --- | --- | --- |")


def rates(path: Path) -> dict[str, float]:
    if not path.is_file() or not path.stat().st_size:  # not run, or the run failed
        return {}
    found = {}
    for row in json.loads(path.read_text()):
        test = row.get("test") or (f"pp{row['n_prompt']}" if row.get("n_prompt")
                                   else f"tg{row['n_gen']}")
        found[test] = row.get("avg_ts") or row.get("t/s") or row.get("tokens_per_s")
    return found


for ours in sorted(folder.glob("llamakit-*.json")):
    name = ours.stem.removeprefix("llamakit-")
    mine, theirs = rates(ours), rates(folder / f"llama-bench-{name}.json")
    print(f"| {name} | {mine.get('pp512', '')} | {mine.get('tg128', '')} | "
          f"{theirs.get('pp512', '')} | {theirs.get('tg128', '')} |")
PYEOF
if [ -n "${OUT:-}" ]; then cp -r "$RESULTS" "$OUT/"; fi
