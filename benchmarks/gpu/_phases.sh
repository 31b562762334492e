# Shared by benchmarks/gpu/cuda.sh and benchmarks/gpu/vulkan.sh (sourced, not run, from the
# repository root): the environment, `stamp`, `detect_device`, `unpack_bundle`, the test
# sweep, the report phase and the phase runner. Expects BUNDLE, PY, RESULTS and WORK set,
# and phase_* functions.

export VULKAN_SDK=$WORK/vulkan-sdk
export PATH=$VULKAN_SDK/bin:$PATH
export CMAKE_PREFIX_PATH=$VULKAN_SDK
export LLAMAKIT_LLAMA_CPP_DIR=$WORK/llama.cpp
export PYTHONUNBUFFERED=1
ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$ICD" ]; then export VK_DRIVER_FILES=$ICD; fi

stamp() { echo "=== $(date +%T) $*"; }

# detect_device: CUDA_ARCHS and BANDWIDTH_TBS from the driver (gpu/device_info.py) unless
# the environment already sets them; a machine without an NVIDIA driver keeps what is set
# (BANDWIDTH_TBS may stay empty: the bandwidth column is then left out).
detect_device() {
    local info
    if info=$("$PY" benchmarks/gpu/device_info.py --shell); then
        eval "$(sed 's/^/DEVICE_/' <<< "$info")"
        CUDA_ARCHS=${CUDA_ARCHS:-$DEVICE_CUDA_ARCHS}
        BANDWIDTH_TBS=${BANDWIDTH_TBS:-$DEVICE_BANDWIDTH_TBS}
        echo "device: $DEVICE_NAME (sm_$DEVICE_CUDA_ARCHS, $DEVICE_BANDWIDTH_TBS TB/s by the" \
            "driver); using CUDA_ARCHS=$CUDA_ARCHS BANDWIDTH_TBS=$BANDWIDTH_TBS"
    else
        echo "no NVIDIA driver answered; CUDA_ARCHS=${CUDA_ARCHS:-} BANDWIDTH_TBS=${BANDWIDTH_TBS:-}"
    fi
    export CUDA_ARCHS BANDWIDTH_TBS
}

# unpack_bundle PLUGIN_DIR...: what the bare image lacks, from the bundle (see
# make_bundle.sh): Debian's Vulkan loader into /, the pruned llama.cpp tree and the
# VULKAN_SDK-like folder into $WORK; then llamakit and the given plugins, editable, and the
# packages the test modules import (jsonschema, hypothesis, openai), from the carried wheels.
unpack_bundle() {
    local deb loader plugin
    local -a editable=(-e .)
    for plugin in "$@"; do editable+=(-e "$plugin"); done
    for deb in "$BUNDLE"/debs/*.deb; do dpkg -x "$deb" /; done
    ldconfig
    rm -rf "$WORK/llama.cpp" "$VULKAN_SDK"
    mkdir -p "$WORK/llama.cpp"
    tar -xzf "$BUNDLE/llama.cpp.tar.gz" -C "$WORK/llama.cpp"
    tar -xzf "$BUNDLE/vulkan-sdk.tar.gz" -C "$WORK"
    loader=$(ldconfig -p | awk '/libvulkan.so.1 .*x86-64/ {print $NF; exit}')
    ln -sf "$loader" "$VULKAN_SDK/lib/libvulkan.so"
    "$PY" -m pip install -q --no-index --find-links "$BUNDLE/wheels" hatchling editables
    "$PY" -m pip install -q --no-index --find-links "$BUNDLE/wheels" --no-build-isolation \
        "${editable[@]}"
    "$PY" -m pip install -q --no-index --find-links "$BUNDLE/wheels" jsonschema hypothesis
    # only tests/server's GPU module needs it: a bundle without it costs that module, not the run
    "$PY" -m pip install -q --no-index --find-links "$BUNDLE/wheels" openai \
        || echo "openai not installed: tests/server's GPU-marked module will skip"
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory \
            --format=csv | tee "$RESULTS/gpu.txt"
    fi
}

# test_sweep [PYTEST ARGS]: every test marked gpu (the whole tests/ tree is collected, so a
# module whose imports fail is an error here, not a silent skip), with the given extra
# arguments; the log and the counts go to $RESULTS/test_gpu_marked.log.
test_sweep() {
    "$PY" -m pytest -q -p no:cacheprovider -ra -m gpu tests "$@" \
        2>&1 | tee "$RESULTS/test_gpu_marked.log"
}

phase_report() {
    stamp report
    "$PY" benchmarks/gpu/_report.py "$RESULTS" | tee "$RESULTS/summary.md"
}

# run_phases PHASE...: each phase in a subshell (so that `set -e` holds inside it); a
# failing phase stops the run, except `test` (failing tests do not stop the measurements)
# and the measurement phases named in KEEP_GOING (default: parity batched serve bench
# report).
# Copies the results to $OUT when it is set; exits with the last failure's status.
run_phases() {
    local phase code status=0
    for phase in "$@"; do
        set +e
        (set -e; "phase_$phase")
        code=$?
        set -e
        if [ "$code" != 0 ]; then
            echo "phase $phase failed ($code)"
            status=$code
            [[ " test ${KEEP_GOING:-parity batched serve bench report} " == *" $phase "* ]] || break
        fi
    done
    if [ -n "${OUT:-}" ]; then
        tar -czf "$OUT/logs.tar.gz" -C "$WORK" results
        cp "$RESULTS"/*.md "$OUT"/ 2>/dev/null || true  # $OUT may take only a few files
    fi
    stamp "done (status $status)"
    exit $status
}
