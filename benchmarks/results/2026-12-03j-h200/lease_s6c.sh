#!/usr/bin/env bash
# 2026-12-03 fifth session, third lease: parity (1B, 5 rounds) and the tg probe again on
# another machine, generate's host phases.
set -x
cd "$(dirname "$0")/.."
W=/tmp/lk-gpu-cuda
export BANDWIDTH_TBS=4.8 ALSO_BUILD="" SHAPES="1b" KINDS="f16 q4_0" PYTHONUNBUFFERED=1
mkdir -p $OUT/results
benchmarks/gpu/cuda.sh setup build models > $OUT/setup.log 2>&1
echo "=== $(date +%T) setup rc $?"
export LLAMAKIT_LLAMA_CPP_DIR=$W/llama.cpp LLAMAKIT_CUDA_ARCHITECTURES=90
LB=$W/tools/llama-bench
PARITY_ROUNDS=5 PARITY_MODELS="1b-f16 1b-q4_0" PARITY_NAME=parity-1b timeout 120 benchmarks/gpu/cuda.sh parity > $OUT/results/parity-call.log 2>&1
cp $W/results/parity-1b.* $OUT/results/
tail -n 18 $W/results/parity-1b.log
for m in 1b-f16 1b-q4_0; do
  timeout 100 python3 benchmarks/gpu/tg_gap_probe.py $W/models/$m.gguf --llama-bench "$LB" --reps 7 --json $OUT/results/probe-$m.json > $OUT/results/probe-$m.log 2>&1
  tail -n 16 $OUT/results/probe-$m.log
done
timeout 60 python3 benchmarks/micro/generate_phases.py $W/models/1b-f16.gguf --backend cuda --json $OUT/results/generate_phases.json > $OUT/results/generate_phases.log 2>&1; tail -n 12 $OUT/results/generate_phases.log
echo "=== $(date +%T) done"
