#!/usr/bin/env bash
# 2026-12-04 sixth session, third lease: the engine with its burst lockstep (BatchStepper.wave), burst and
# staggered arrivals, against llama-batched-bench.
set -x
cd "$(dirname "$0")/.."
W=/tmp/lk-gpu-cuda
START=$SECONDS
LIMIT=${LIMIT:-560}
export BANDWIDTH_TBS=4.8 RUNS=5 ALSO_BUILD="" SHAPES="8b" PYTHONUNBUFFERED=1
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
}
phase setup_build_models 420 benchmarks/gpu/cuda.sh setup build models || exit 0
export LLAMAKIT_LLAMA_CPP_DIR=$W/llama.cpp LLAMAKIT_CUDA_ARCHITECTURES=90
engine() { BATCHED_NAME=engine-burst BATCHED_ARGS="--modes greedy,engine-greedy,default,engine-default" timeout 200 benchmarks/gpu/cuda.sh batched; }
staggered() { BATCHED_NAME=engine-staggered BATCHED_ARGS="--modes engine-greedy --engine-arrival staggered" timeout 120 benchmarks/gpu/cuda.sh batched; }
serve() { SERVE_CONCURRENCY=1,16,64 SERVE_ARGS="--tokens 64 --requests 2 --rounds 1" timeout 200 benchmarks/gpu/cuda.sh serve; }
phase engine 100 engine
phase staggered 60 staggered
phase serve 100 serve
echo "=== $(date +%T) end of call ($(left) s left)"; ls $W/done
tar -C $W -czf $OUT/results.tgz results
