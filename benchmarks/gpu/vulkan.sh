#!/usr/bin/env bash
# The Vulkan backend on a GPU machine without network, one command (the memory bandwidth
# comes from the driver on NVIDIA machines, device_info.py, unless BANDWIDTH_TBS is set):
#
#     benchmarks/gpu/make_bundle.sh             # here, once: writes .device/ (about 17 MB)
#     benchmarks/gpu/vulkan.sh                  # there, from the repository root
#
# Phases (all by default, or name some: setup build test models bench report):
#   setup   unpack Debian's Vulkan loader into / (the image has the driver's ICD but no
#           loader), the pruned llama.cpp tree and the VULKAN_SDK-like folder of .device/;
#           pip-install the carried wheels and llamakit, llamakit-cpu, llamakit-vulkan,
#           llamakit-rpc (-e) and the test modules' imports
#   build   `python3 -m llamakit build cpu vulkan`, and beside it llama.cpp's llama-bench
#           and llama-quantize from the same tree with the vulkan variant's CMake flags
#           (llamakit's COMMON_CMAKE_FLAGS + the spec's, tools switched on)
#   test    tests/vulkan and every test marked gpu
#   models  1B and 8B llama shapes (llama-spm vocab) in F16 with write_llama_model
#           (reuse_weights: one random array per shape), then $QUANT with llama-quantize
#   bench   benchmarks/gpu/backends.py --backends vulkan --llama-bench ... per model
#   report  one markdown table of all models (results/summary.md)
#
# Results and logs go to $WORK/results (and are copied to $OUT when it is set).
# Environment: BUNDLE (default .device), WORK (default /tmp/lk-gpu-vulkan), QUANT (Q4_0),
# SHAPES ("1b 8b"), RUNS (5), BANDWIDTH_TBS (from the device; none: no bandwidth column),
# CPU_BENCH_SHAPES (shapes whose F16 and $QUANT models are also measured on the cpu
# backend; default none), GLSLC (modern: the bundle's bin/glslc-modern, the default when the
# bundle has one; system: bookworm's glslc, no matrix-core shaders).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUNDLE=${BUNDLE:-$ROOT/.device}
WORK=${WORK:-/tmp/lk-gpu-vulkan}
RESULTS=$WORK/results
PY=${PYTHON:-python3}
QUANT=${QUANT:-Q4_0}
SHAPES=${SHAPES:-"1b 8b"}
RUNS=${RUNS:-5}
CPU_BENCH_SHAPES=${CPU_BENCH_SHAPES:-}
JOBS=$(nproc)
mkdir -p "$RESULTS" "$WORK/models"

source benchmarks/gpu/_phases.sh  # environment, stamp, detect_device, unpack_bundle, run_phases
detect_device
# The variant, llama-bench and llama-quantize take the shader compiler from this setting.
if [ "${GLSLC:-modern}" = modern ] && tar -tzf "$BUNDLE/vulkan-sdk.tar.gz" \
        vulkan-sdk/bin/glslc-modern > /dev/null 2>&1; then
    export LLAMAKIT_BACKENDS__VULKAN__GLSLC=$VULKAN_SDK/bin/glslc-modern
fi

phase_setup() {
    stamp setup
    unpack_bundle plugins/cpu plugins/vulkan plugins/rpc
}

tool_flags() {
    "$PY" - <<'EOF'
from llamakit._build.variant import COMMON_CMAKE_FLAGS
from llamakit_vulkan import vulkan_backend

flags = {**COMMON_CMAKE_FLAGS, **vulkan_backend().cmake_flags(),
         "LLAMA_BUILD_TOOLS": "ON", "LLAMA_BUILD_COMMON": "ON"}
print("\n".join(f"-D{k}={v}" for k, v in flags.items()))
EOF
}

phase_build() {
    stamp build
    local flags
    # One flag per line: CMAKE_C_FLAGS holds spaces (the CPU variant's -mno-amx-* flags).
    mapfile -t flags < <(tool_flags)
    echo "llama-bench/llama-quantize CMake flags: ${flags[*]}" | tee "$RESULTS/tool_flags.txt"
    # The two builds overlap: each has a long single-file step (ggml-vulkan.cpp).
    (cmake -S "$LLAMAKIT_LLAMA_CPP_DIR" -B "$WORK/tools-build" -G Ninja "${flags[@]}" \
        && ninja -C "$WORK/tools-build" -j "$JOBS" llama-bench llama-quantize) \
        > "$RESULTS/tools_build.log" 2>&1 &
    local tools=$!
    "$PY" -m llamakit build cpu vulkan 2>&1 | tee "$RESULTS/llamakit_build.log"
    wait "$tools" || { tail -40 "$RESULTS/tools_build.log"; return 1; }
    grep -i "not supported by glslc\|supported by glslc" "$RESULTS/tools_build.log" || true
    "$PY" -m llamakit devices 2>&1 | tee "$RESULTS/devices.txt"
}

phase_test() {
    stamp test
    local status=0
    "$PY" -m pytest -q -p no:cacheprovider tests/vulkan \
        2>&1 | tee "$RESULTS/test_vulkan.log" || status=1
    test_sweep || status=1
    return $status
}

phase_models() {
    stamp models
    local shape
    for shape in $SHAPES; do
        "$PY" -c "
import sys; sys.path.insert(0, 'benchmarks/gpu')
from pathlib import Path
from backends import write_synthetic
write_synthetic('$shape', Path('$WORK/models/$shape-f16.gguf'), dtype='f16')"
        local quant=$WORK/models/$shape-${QUANT,,}.gguf
        if [ ! -f "$quant" ]; then
            local started=$SECONDS
            "$WORK/tools-build/bin/llama-quantize" "$WORK/models/$shape-f16.gguf" "$quant" \
                "$QUANT" "$JOBS" > "$RESULTS/quantize-$shape.log" 2>&1
            echo "llama-quantize $shape $QUANT: $((SECONDS - started)) s"
        fi
    done
    ls -la "$WORK/models"
}

phase_bench() {
    stamp bench
    local shape kind backends
    for shape in $SHAPES; do
        for kind in f16 "${QUANT,,}"; do
            backends=vulkan
            if [[ " $CPU_BENCH_SHAPES " == *" $shape "* ]]; then backends=vulkan,cpu; fi
            stamp "bench $shape-$kind ($backends)"
            "$PY" benchmarks/gpu/backends.py --model "$WORK/models/$shape-$kind.gguf" \
                --backends "$backends" --runs "$RUNS" --n-prompt 512 --n-gen 128 \
                --llama-bench "$WORK/tools-build/bin/llama-bench" \
                ${BANDWIDTH_TBS:+--bandwidth-tbs "$BANDWIDTH_TBS"} --json "$RESULTS/bench-$shape-$kind.json" \
                2>&1 | tee "$RESULTS/bench-$shape-$kind.log"
        done
    done
}

run_phases ${*:-setup build test models bench report}
