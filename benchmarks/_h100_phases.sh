# Shared by benchmarks/h100_vulkan.sh and benchmarks/h100_cuda.sh (sourced, not run, from
# the repository root): the environment, `stamp`, `unpack_bundle`, the report phase and
# the phase runner. Expects BUNDLE, PY, RESULTS and WORK set, and phase_* functions.

export VULKAN_SDK=$WORK/vulkan-sdk
export PATH=$VULKAN_SDK/bin:$PATH
export CMAKE_PREFIX_PATH=$VULKAN_SDK
export LLAMAKIT_LLAMA_CPP_DIR=$WORK/llama.cpp
export PYTHONUNBUFFERED=1
ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$ICD" ]; then export VK_DRIVER_FILES=$ICD; fi

stamp() { echo "=== $(date +%T) $*"; }

# unpack_bundle PLUGIN_DIR...: what the bare image lacks, from .device/ (see
# make_device_bundle.sh): Debian's Vulkan loader into /, the pruned llama.cpp tree and the
# VULKAN_SDK-like folder into $WORK; then llamakit and the given plugins, editable, from
# the carried wheels; records the GPU.
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
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory \
        --format=csv | tee "$RESULTS/gpu.txt"
}

phase_report() {
    stamp report
    "$PY" benchmarks/_h100_report.py "$RESULTS" | tee "$RESULTS/summary.md"
}

# run_phases PHASE...: each phase in a subshell (so that `set -e` holds inside it); a
# failing phase stops the run, except `test` (failing tests do not stop the measurements).
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
            [ "$phase" = test ] || break
        fi
    done
    if [ -n "${OUT:-}" ]; then
        tar -czf "$OUT/logs.tar.gz" -C "$WORK" results
        cp "$RESULTS"/summary.md "$RESULTS"/bench-*.json "$OUT"/ 2>/dev/null || true
    fi
    stamp "done (status $status)"
    exit $status
}
