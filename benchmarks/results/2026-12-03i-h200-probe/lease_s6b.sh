#!/usr/bin/env bash
# 2026-12-03 fifth session, second lease: where generate's tg loses to llama-bench's loop
# (benchmarks/gpu/tg_gap_probe.py) on 1B F16 and 1B Q4_0.
set -x
cd "$(dirname "$0")/.."
W=/tmp/lk-gpu-cuda
export BANDWIDTH_TBS=4.8 ALSO_BUILD="" SHAPES="1b" KINDS="f16 q4_0" PYTHONUNBUFFERED=1
mkdir -p $OUT/results
benchmarks/gpu/cuda.sh setup build models > $OUT/setup.log 2>&1
echo "=== $(date +%T) setup rc $?"
export LLAMAKIT_LLAMA_CPP_DIR=$W/llama.cpp LLAMAKIT_CUDA_ARCHITECTURES=90
LB=$W/tools/llama-bench
echo "llama-bench: $LB"
nproc; lscpu | grep -i "thread\|core\|socket\|model name" | head -6
for m in 1b-f16 1b-q4_0; do
  timeout 120 python3 benchmarks/gpu/tg_gap_probe.py $W/models/$m.gguf --llama-bench "$LB" --reps 5 --json $OUT/results/probe-$m.json > $OUT/results/probe-$m.log 2>&1
  cat $OUT/results/probe-$m.log | tail -20
done
echo "=== $(date +%T) done"
