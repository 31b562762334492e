#!/usr/bin/env bash
# The CUDA backend on an NVIDIA machine without network, one command, next to llama.cpp's
# own llama-bench and llama-batched-bench built from the same CMake tree and the llamakit
# vulkan backend. The GPU's architecture and memory bandwidth come from the driver
# (device_info.py) unless CUDA_ARCHS / BANDWIDTH_TBS are set:
#
#     benchmarks/gpu/make_bundle.sh             # here, once: writes .device/ (about 17 MB)
#     benchmarks/gpu/cuda.sh                    # there, from the repository root
#     benchmarks/gpu/cuda.sh setup build test   # only some phases
#
# Phases (default: setup build test models bench report; also parity and batched):
#   setup   as vulkan.sh (Vulkan loader, pruned llama.cpp tree, VULKAN_SDK-like folder,
#           wheels; pip-installs llamakit and the cpu, vulkan, cuda and rpc plugins and the
#           test modules' imports), then makes the CUDA toolkit complete where it lacks
#           cuBLAS (the `device` tool's image has it only in PyTorch's environment,
#           nvidia/cu13: linked into the toolkit's include/ and lib64/) or the libcuda stub
#           (linked to the driver's library). Starts writing the F16 models in the background.
#   build   `llamakit build cuda` (CMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHS) beside
#           `llamakit build cpu vulkan`; then llama-bench, llama-batched-bench and
#           llama-quantize in the cuda variant's own CMake build folder (reconfigured with
#           LLAMA_BUILD_TOOLS and LLAMA_BUILD_COMMON on; ggml-cuda is not compiled twice:
#           tools_build.log shows how many steps ninja ran)
#   test    tests/cuda and every test marked gpu (the vulkan one that expects `auto` to
#           pick vulkan runs with llamakit-cuda disabled)
#   models  $SHAPES llama shapes (llama-spm vocab, F16, write_llama_model with
#           reuse_weights), then $QUANT with the same tree's llama-quantize
#   bench   gpu/backends.py --backends $BACKENDS --llama-bench-backend cuda: llamakit
#           cuda, then llama-bench (CUDA), then llamakit vulkan, per model
#   parity  gpu/parity.py: llamakit cuda and llama-bench interleaved, round by round, with
#           the gap split into its parts (llama.cpp's own timings, engine-level loops), per
#           model of $PARITY_MODELS
#   batched gpu/batched.py: generate_batch against llama-batched-bench on $BATCHED_MODEL
#   serve   compare/serve.py: `llamakit serve --backend cuda -ngl 99` against the same
#           tree's llama-server (CUDA), streaming clients at $SERVE_CONCURRENCY, on
#           $SERVE_MODEL
#   report  one markdown table of all models (results/summary.md)
#
# Results and logs go to $WORK/results (and are copied to $OUT when it is set).
# Environment: BUNDLE (default .device), WORK (default /tmp/lk-gpu-cuda), QUANT (Q4_0),
# SHAPES ("1b 8b"), KINDS ("f16 q4_0"), RUNS (5), BANDWIDTH_TBS and CUDA_ARCHS (from the
# device), BACKENDS (cuda,vulkan), PARITY_MODELS ("1b-f16 1b-q4_0 8b-f16 8b-q4_0", those
# written), PARITY_ROUNDS (5), PARITY_NAME (parity: its .json and .log), BATCHED_MODEL
# (8b-q4_0), BATCHED_NPL (1,8,32,64), ALSO_BUILD ("cpu vulkan": the variants built beside
# cuda, which the tests and the vulkan rows need; empty: none), PARITY_ARGS (more flags),
# BATCHED_NAME (batched: its .json and .log), BATCHED_ARGS (default --profile 32),
# SERVE_MODEL (8b-q4_0), SERVE_CONCURRENCY (1,4,16,64), SERVE_NAME (serve: its .json, .md
# and .log), SERVE_ARGS (--tokens 64 --requests 2
# --rounds 2), GLSLC (modern: the bundle's bin/glslc-modern for the vulkan variant when
# the bundle has one; system: bookworm's).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUNDLE=${BUNDLE:-$ROOT/.device}
WORK=${WORK:-/tmp/lk-gpu-cuda}
RESULTS=$WORK/results
PY=${PYTHON:-python3}
QUANT=${QUANT:-Q4_0}
SHAPES=${SHAPES:-"1b 8b"}
KINDS=${KINDS:-"f16 ${QUANT,,}"}
RUNS=${RUNS:-5}
PARITY_ROUNDS=${PARITY_ROUNDS:-5}
PARITY_NAME=${PARITY_NAME:-parity}
BATCHED_MODEL=${BATCHED_MODEL:-8b-${QUANT,,}}
BATCHED_NPL=${BATCHED_NPL:-1,8,32,64}
BATCHED_NAME=${BATCHED_NAME:-batched}
BACKENDS=${BACKENDS:-cuda,vulkan}
SERVE_MODEL=${SERVE_MODEL:-8b-${QUANT,,}}
SERVE_CONCURRENCY=${SERVE_CONCURRENCY:-1,4,16,64}
SERVE_NAME=${SERVE_NAME:-serve}
ALSO_BUILD=${ALSO_BUILD-cpu vulkan}
JOBS=$(nproc)
mkdir -p "$RESULTS" "$WORK/models"

source benchmarks/gpu/_phases.sh  # environment, stamp, detect_device, unpack_bundle, run_phases
detect_device
: "${CUDA_ARCHS:?no NVIDIA driver answered: set CUDA_ARCHS (e.g. 90) to build anyway}"
export LLAMAKIT_CUDA_ARCHITECTURES=$CUDA_ARCHS
# The vulkan variant built beside cuda takes the shader compiler from this setting.
if [ "${GLSLC:-modern}" = modern ] && tar -tzf "$BUNDLE/vulkan-sdk.tar.gz" \
        vulkan-sdk/bin/glslc-modern > /dev/null 2>&1; then
    export LLAMAKIT_BACKENDS__VULKAN__GLSLC=$VULKAN_SDK/bin/glslc-modern
fi

# The toolkit's root: the folder above the real nvcc's bin/ (PATH's nvcc may be a wrapper).
toolkit_root() {
    local nvcc here
    nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
    here=$("$nvcc" --dryrun -v -x cu /dev/null -c -o /dev/null 2>&1 \
        | sed -n 's/^#\$ _HERE_=//p' | head -1)
    readlink -f "${here:-$(dirname "$(readlink -f "$nvcc")")}/.."
}

complete_toolkit() {
    local tk site cu lib name real
    tk=$(toolkit_root)
    echo "CUDA toolkit: $tk"
    "$tk/bin/nvcc" --version | tail -2
    lib=$tk/lib64
    [ -d "$lib" ] || lib=$tk/lib
    if [ ! -f "$tk/include/cublas_v2.h" ]; then
        site=$("$PY" -c "import nvidia; print(list(nvidia.__path__)[0])")
        cu=""
        for candidate in "$site/cu13" "$site/cublas"; do
            if [ -f "$candidate/include/cublas_v2.h" ]; then cu=$candidate; break; fi
        done
        [ -n "$cu" ] || { echo "no cuBLAS in $site"; return 1; }
        echo "linking cuBLAS from $cu into $tk"
        for f in "$cu"/include/cublas*.h; do
            [ -e "$tk/include/$(basename "$f")" ] || ln -s "$f" "$tk/include/"
        done
        for f in "$cu"/lib/libcublas*.so*; do
            [ -e "$lib/$(basename "$f")" ] || ln -s "$f" "$lib/"
        done
        for name in cublas cublasLt; do
            real=$(cd "$lib" && ls lib$name.so.* | sort | head -1)
            [ -e "$lib/lib$name.so" ] || ln -s "$real" "$lib/lib$name.so"
        done
    fi
    if [ ! -e "$lib/stubs/libcuda.so" ]; then
        real=$(ldconfig -p | awk '/libcuda.so.1 .*x86-64/ {print $NF; exit}')
        [ -n "$real" ] || real=$(ls /usr/local/nvidia/lib64/libcuda.so.1 2>/dev/null || true)
        [ -n "$real" ] || { echo "no libcuda.so.1 (the driver)"; return 1; }
        echo "linking $real as $lib/stubs/libcuda.so"
        mkdir -p "$lib/stubs"
        ln -s "$real" "$lib/stubs/libcuda.so"
    fi
}

phase_setup() {
    stamp setup
    unpack_bundle plugins/cpu plugins/vulkan plugins/cuda plugins/rpc plugins/server
    [ -d "$WORK/llama.cpp/ggml/src/ggml-cuda" ] || {
        echo "the bundle's llama.cpp tree lacks ggml/src/ggml-cuda: rerun make_device_bundle.sh"
        return 1; }
    complete_toolkit 2>&1 | tee "$RESULTS/toolkit.txt"
    "$PY" -c "import llamakit_cuda; print(llamakit_cuda.probe())" | tee "$RESULTS/probe_before.txt"
    # The F16 models take a minute or two of CPU and disk: written while the builds run.
    rm -f "$WORK/models_f16.done"
    touch "$WORK/models_f16.started"
    (set +e; phase_models_f16 > "$RESULTS/models_f16.log" 2>&1
     echo $? > "$WORK/models_f16.done") &
}

# The CMake build folder of variant $1 (cuda, vulkan), where llamakit built it.
variant_build_dir() {
    "$PY" - "$1" <<'EOF'
import sys

from llamakit._build.cache import cache_dir
from llamakit._build.variant import _lib_key
from llamakit._plugins.manager import get_plugin_host

spec = get_plugin_host().backends()[sys.argv[1]]
print(cache_dir() / "cmake" / f"{spec.name}-{_lib_key(spec)[0][:16]}")
EOF
}

phase_build() {
    stamp build
    # shellcheck disable=SC2086  # ALSO_BUILD is a list of variant names
    if [ -n "$ALSO_BUILD" ]; then
        ("$PY" -m llamakit build $ALSO_BUILD > "$RESULTS/build_cpu_vulkan.log" 2>&1) &
    else
        true &
    fi
    local others=$! started=$SECONDS
    "$PY" -m llamakit build cuda 2>&1 | tee "$RESULTS/build_cuda.log"
    echo "llamakit build cuda: $((SECONDS - started)) s" | tee -a "$RESULTS/timings.txt"
    local dir cmake ninja
    dir=$(variant_build_dir cuda)
    cmake=$("$PY" -c "from llamakit._build.variant import tool_path; print(tool_path('cmake'))")
    ninja=$("$PY" -c "from llamakit._build.variant import tool_path; print(tool_path('ninja'))")
    echo "cuda CMake build folder: $dir" | tee "$RESULTS/tool_flags.txt"
    grep -E "CMAKE_CUDA_ARCHITECTURES|GGML_CUDA|CUDAToolkit" "$dir/CMakeCache.txt" \
        | tee -a "$RESULTS/tool_flags.txt" || true
    started=$SECONDS
    ("$cmake" -S "$LLAMAKIT_LLAMA_CPP_DIR" -B "$dir" -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_SERVER=ON && "$ninja" -C "$dir" -j "$JOBS" \
        llama-bench llama-batched-bench llama-quantize llama-server) \
        > "$RESULTS/tools_build.log" 2>&1 || { tail -40 "$RESULTS/tools_build.log"; return 1; }
    echo "llama-bench, llama-batched-bench, llama-quantize, llama-server in the same tree: $((SECONDS - started)) s, ninja steps:" \
        "$(grep -c '^\[' "$RESULTS/tools_build.log")," \
        "of them ggml-cuda: $(grep -c 'ggml-cuda' "$RESULTS/tools_build.log" || true)" \
        | tee -a "$RESULTS/timings.txt"
    ln -sfn "$dir/bin" "$WORK/tools"
    wait "$others" || { tail -40 "$RESULTS/build_cpu_vulkan.log"; return 1; }
    if [[ " $ALSO_BUILD " == *" vulkan "* ]]; then
        # llama-bench for Vulkan in the vulkan variant's own folder (its shaders are not
        # compiled twice): gpu/vulkan_knobs.sh uses it.
        dir=$(variant_build_dir vulkan)
        started=$SECONDS
        ("$cmake" -S "$LLAMAKIT_LLAMA_CPP_DIR" -B "$dir" -DLLAMA_BUILD_TOOLS=ON \
            -DLLAMA_BUILD_COMMON=ON && "$ninja" -C "$dir" -j "$JOBS" llama-bench) \
            > "$RESULTS/tools_vulkan_build.log" 2>&1 \
            || { tail -40 "$RESULTS/tools_vulkan_build.log"; return 1; }
        echo "llama-bench (vulkan) in the vulkan variant's folder: $((SECONDS - started)) s," \
            "ninja steps: $(grep -c '^\[' "$RESULTS/tools_vulkan_build.log")" \
            | tee -a "$RESULTS/timings.txt"
        ln -sfn "$dir/bin" "$WORK/tools-vulkan"
    fi
    # Listing every backend's devices loads (and would build) each variant.
    if [ -n "$ALSO_BUILD" ]; then "$PY" -m llamakit devices 2>&1 | tee "$RESULTS/devices.txt"; fi
    "$PY" -c "import llamakit_cuda; print(llamakit_cuda.probe())" | tee "$RESULTS/probe.txt"
}

phase_test() {
    stamp test
    local status=0
    "$PY" -m pytest -q -p no:cacheprovider -ra tests/cuda \
        2>&1 | tee "$RESULTS/test_cuda.log" || status=1
    test_sweep --ignore=tests/cuda \
        --deselect tests/vulkan/test_vulkan.py::test_auto_picks_vulkan_on_a_gpu || status=1
    LLAMAKIT_DISABLE_PLUGINS=llamakit-cuda "$PY" -m pytest -q -p no:cacheprovider -ra \
        tests/vulkan/test_vulkan.py::test_auto_picks_vulkan_on_a_gpu \
        2>&1 | tee "$RESULTS/test_vulkan_auto.log" || status=1
    return $status
}

phase_models_f16() {
    local shape
    for shape in $SHAPES; do
        "$PY" -c "
import sys; sys.path.insert(0, 'benchmarks/gpu')
from pathlib import Path
from backends import write_synthetic
write_synthetic('$shape', Path('$WORK/models/$shape-f16.gguf'), dtype='f16')"
    done
}

phase_models() {
    stamp models
    if [ -f "$WORK/models_f16.started" ]; then  # setup writes them in the background
        while [ ! -f "$WORK/models_f16.done" ]; do sleep 2; done
        cat "$RESULTS/models_f16.log"
        [ "$(cat "$WORK/models_f16.done")" = 0 ] || return 1
    else
        phase_models_f16
    fi
    local shape quant started
    for shape in $SHAPES; do
        quant=$WORK/models/$shape-${QUANT,,}.gguf
        if [[ " $KINDS " == *" ${QUANT,,} "* ]] && [ ! -f "$quant" ]; then
            started=$SECONDS
            "$WORK/tools/llama-quantize" "$WORK/models/$shape-f16.gguf" "$quant" "$QUANT" \
                "$JOBS" > "$RESULTS/quantize-$shape.log" 2>&1
            echo "llama-quantize $shape $QUANT: $((SECONDS - started)) s"
        fi
    done
    ls -la "$WORK/models"
}

phase_bench() {
    stamp bench
    local shape kind
    for shape in $SHAPES; do
        for kind in $KINDS; do
            stamp "bench $shape-$kind ($BACKENDS)"
            "$PY" benchmarks/gpu/backends.py --model "$WORK/models/$shape-$kind.gguf" \
                --backends "$BACKENDS" --runs "$RUNS" --n-prompt 512 --n-gen 128 \
                --llama-bench "$WORK/tools/llama-bench" --llama-bench-backend cuda \
                ${BANDWIDTH_TBS:+--bandwidth-tbs "$BANDWIDTH_TBS"} --json "$RESULTS/bench-$shape-$kind.json" \
                2>&1 | tee "$RESULTS/bench-$shape-$kind.log"
        done
    done
}

phase_parity() {
    stamp parity
    local name models=()
    for name in ${PARITY_MODELS:-1b-f16 1b-${QUANT,,} 8b-f16 8b-${QUANT,,}}; do
        if [ -f "$WORK/models/$name.gguf" ]; then models+=("$WORK/models/$name.gguf"); fi
    done
    [ ${#models[@]} -gt 0 ] || { echo "no model of PARITY_MODELS was written"; return 1; }
    "$PY" benchmarks/gpu/parity.py "${models[@]}" --backend cuda --rounds "$PARITY_ROUNDS" \
        ${PARITY_ARGS:-} --llama-bench "$WORK/tools/llama-bench" --json "$RESULTS/$PARITY_NAME.json" \
        2>&1 | tee "$RESULTS/$PARITY_NAME.log"
}

phase_batched() {
    stamp batched
    "$PY" benchmarks/gpu/batched.py "$WORK/models/$BATCHED_MODEL.gguf" --backend cuda \
        --npl "$BATCHED_NPL" ${BATCHED_ARGS---profile 32} \
        --llama-batched-bench "$WORK/tools/llama-batched-bench" \
        --json "$RESULTS/$BATCHED_NAME.json" 2>&1 | tee "$RESULTS/$BATCHED_NAME.log"
}

phase_serve() {
    stamp serve
    # shellcheck disable=SC2086  # SERVE_ARGS is a list of flags
    "$PY" benchmarks/compare/serve.py --model "$WORK/models/$SERVE_MODEL.gguf" \
        --backend cuda --n-gpu-layers 99 --concurrency "$SERVE_CONCURRENCY" \
        ${SERVE_ARGS:---tokens 64 --requests 2 --rounds 2} \
        --llama-server "$WORK/tools/llama-server" --json "$RESULTS/$SERVE_NAME.json" \
        --markdown "$RESULTS/$SERVE_NAME.md" 2>&1 | tee "$RESULTS/$SERVE_NAME.log"
}

run_phases ${*:-setup build test models bench report}
