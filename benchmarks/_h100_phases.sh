# Shared by benchmarks/h100_vulkan.sh and benchmarks/h100_cuda.sh (sourced, not run):
# the report phase and the phase runner. Expects PY, RESULTS, WORK and phase_* functions.

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
