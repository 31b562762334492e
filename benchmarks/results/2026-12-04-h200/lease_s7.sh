#!/usr/bin/env bash
# 2026-12-04 sixth session: one lease, called repeatedly; each phase runs once (marker files
# in $W/done), skipped when the call's time would not hold it. Phases: setup build models,
# batched (native batch runs against Python steps, twice), tests, parity (1b, 8b).
set -x
cd "$(dirname "$0")/.."
W=/tmp/lk-gpu-cuda
START=$SECONDS
LIMIT=${LIMIT:-560}
export BANDWIDTH_TBS=4.8 RUNS=5 ALSO_BUILD="cpu" SHAPES="1b 8b" PYTHONUNBUFFERED=1
mkdir -p $W/done $W/results
left() { echo $((LIMIT - (SECONDS - START))); }
phase() {  # name seconds-needed command...
    local name=$1 need=$2; shift 2
    if [ -f $W/done/$name ]; then echo "=== skip $name (done)"; return 0; fi
    if [ "$(left)" -lt "$need" ]; then echo "=== skip $name (needs $need s, $(left) left)"; return 1; fi
    echo "=== $(date +%T) $name ($(left) s left)"
    local t0=$SECONDS
    "$@" && touch $W/done/$name
    echo "=== $(date +%T) $name took $((SECONDS - t0)) s, rc $?"
    mkdir -p "$OUT/results"; cp -r $W/results/. "$OUT/results/" 2>/dev/null
}
phase setup_build_models 420 benchmarks/gpu/cuda.sh setup build models || exit 0
export LLAMAKIT_LLAMA_CPP_DIR=$W/llama.cpp LLAMAKIT_CUDA_ARCHITECTURES=90
batched() { BATCHED_ARGS="--modes greedy,greedy-py,default,default-py" timeout 170 benchmarks/gpu/cuda.sh batched; }
batched2() { BATCHED_NAME=batched2 BATCHED_ARGS="--modes greedy-py,greedy,default-py,default" timeout 170 benchmarks/gpu/cuda.sh batched; }
parity1b() { PARITY_ROUNDS=3 PARITY_MODELS="1b-f16 1b-q4_0" PARITY_NAME=parity-1b timeout 100 benchmarks/gpu/cuda.sh parity; }
parity8b() { PARITY_ROUNDS=2 PARITY_MODELS="8b-f16 8b-q4_0" PARITY_NAME=parity-8b timeout 150 benchmarks/gpu/cuda.sh parity; }
tests() { timeout 200 python3 -m pytest -q -p no:cacheprovider -ra tests/cuda tests/test_batch_run.py tests/test_batch.py tests/test_generate_run.py tests/samplers/test_backend_sampling.py > $W/results/tests.log 2>&1; tail -3 $W/results/tests.log; }
phase batched 130 batched
phase tests 200 tests
phase batched2 130 batched2
phase parity1b 100 parity1b
phase parity8b 150 parity8b
echo "=== $(date +%T) end of call ($(left) s left)"; ls $W/done
