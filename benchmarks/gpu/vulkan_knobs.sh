#!/usr/bin/env bash
# llama.cpp's Vulkan backend under its runtime switches (GGML_VK_* environment variables),
# one llama-bench run per setting, all models in that one run (issue 25, item 2: which
# switch moves tg128 / pp512 on an NVIDIA datacenter GPU without touching llama.cpp):
#
#     benchmarks/gpu/vulkan_knobs.sh [LLAMA_BENCH] [MODEL.gguf ...]
#
# LLAMA_BENCH: a llama-bench built with GGML_VULKAN (default $VK_BENCH, else the one
# `gpu/cuda.sh build` leaves in /tmp/lk-gpu-cuda/tools-vulkan when it builds the vulkan
# variant, or `gpu/vulkan.sh build` in $WORK/tools-build/bin). MODELS: default $KNOB_MODELS (names, "1b-f16 1b-q4_0
# 8b-q4_0") from $WORK/models, those that exist. Run after the `setup` phase of gpu/cuda.sh
# or gpu/vulkan.sh (the Vulkan loader comes from there); the NVIDIA ICD is picked as there.
#
# Each setting: `env SETTING llama-bench -m M1 -m M2 ... -p 512 -n 128 -r $REPS -ngl 99
# -fa FA -o jsonl` (llama-bench warms each test up first, so the first setting's pipeline
# compilation is not timed, only paid for). Settings run in the order of SETTINGS below
# (or of $KNOBS, names); one is not started when a run as long as the previous one would
# end after $BUDGET_S seconds (default 150); skipped ones are listed. `baseline_end`
# repeats the baseline to show drift. With CUDA_BENCH=path (a CUDA llama-bench of the same
# tree, e.g. /tmp/lk-gpu-cuda/tools/llama-bench), a `cuda` reference row runs last (it is
# outside the budget) and the table gains a tg / CUDA column per model.
#
# Environment: REPS (3), BUDGET_S (150), KNOBS (setting names, of SETTINGS and OPTIONAL
# below, in the order given; e.g. KNOBS="baseline perf_logger"), EXTRA_SETTINGS (more
# "name;VAR=VALUE VAR2=VALUE;fa" entries, space-free values, separated by newlines),
# RESULTS (default $OUT/vulkan_knobs when OUT is set, else /tmp/lk-vulkan-knobs),
# CUDA_BENCH. Output: one .jsonl and .log per setting and summary.md in $RESULTS.
set -euo pipefail

PY=${PYTHON:-python3}
REPS=${REPS:-3}
BUDGET_S=${BUDGET_S:-150}

BENCH=${VK_BENCH:-}
if [ $# -gt 0 ] && [[ "$1" != *.gguf ]]; then BENCH=$1; shift; fi
if [ -z "$BENCH" ]; then
    for candidate in /tmp/lk-gpu-cuda/tools-vulkan/llama-bench \
                     /tmp/lk-gpu-cuda/tools-build/bin/llama-bench \
                     /tmp/lk-gpu-vulkan/tools-build/bin/llama-bench; do
        if [ -x "$candidate" ]; then BENCH=$candidate; break; fi
    done
fi
[ -n "$BENCH" ] && [ -x "$BENCH" ] || {
    echo "no Vulkan llama-bench: pass its path or set VK_BENCH (gpu/vulkan.sh build makes one)"
    exit 2; }
WORK=${WORK:-$(cd "$(dirname "$BENCH")/../.." && pwd)}

MODELS=("$@")
if [ ${#MODELS[@]} -eq 0 ]; then
    for name in ${KNOB_MODELS:-1b-f16 1b-q4_0 8b-q4_0}; do
        if [ -f "$WORK/models/$name.gguf" ]; then MODELS+=("$WORK/models/$name.gguf"); fi
    done
fi
[ ${#MODELS[@]} -gt 0 ] || { echo "no models: pass MODEL.gguf paths (none in $WORK/models)"; exit 2; }

if [ -n "${OUT:-}" ]; then RESULTS=${RESULTS:-$OUT/vulkan_knobs}; else RESULTS=${RESULTS:-/tmp/lk-vulkan-knobs}; fi
mkdir -p "$RESULTS"
rm -f "$RESULTS"/*.jsonl "$RESULTS"/*.log "$RESULTS/order.txt"

# As benchmarks/gpu/_phases.sh: the image has NVIDIA's ICD json but the loader finds it
# only when told.
ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$ICD" ]; then
    export VK_DRIVER_FILES=$ICD
fi

# name;environment;flash attention. Ordered by expected use: the batch-1 matrix-vector
# path (MMVQ int8 dot vs dequant), flash attention (with GQA a tg step takes the coopmat2
# FA path; without any coopmat it takes the scalar one: read the tg columns of
# no_coopmat_any, its pp is the no-matrix-core one), coopmat2 vs coopmat1 (F16 pp), memory
# type of the weights, submission size, graph reordering.
SETTINGS=(
    "baseline;;1"
    "force_mmvq;GGML_VK_FORCE_MMVQ=1;1"
    "no_mmvq;GGML_VK_DISABLE_MMVQ=1;1"
    "fa_off;;0"
    "no_coopmat2;GGML_VK_DISABLE_COOPMAT2=1;1"
    "no_coopmat_any;GGML_VK_DISABLE_COOPMAT=1 GGML_VK_DISABLE_COOPMAT2=1;1"
    "no_hostvis_vidmem;GGML_VK_DISABLE_HOST_VISIBLE_VIDMEM=1;1"
    "submit_1000;GGML_VK_MAX_NODES_PER_SUBMIT=1000;1"
    "submit_20;GGML_VK_MAX_NODES_PER_SUBMIT=20;1"
    "no_graph_opt;GGML_VK_DISABLE_GRAPH_OPTIMIZE=1;1"
    "baseline_end;;1"
)
# Run only when named in $KNOBS: less likely to help, or diagnostics. perf_logger's speeds
# are not comparable (it waits for the GPU after every graph and times each op with a
# barrier); its .log holds the GPU time per op, summed over 128 graphs, i.e. one tg128 run
# ("Total time"), against which the tg wall time per token shows the host/launch share.
OPTIONAL=(
    "no_fusion;GGML_VK_DISABLE_FUSION=1;1"
    "no_async;GGML_VK_DISABLE_ASYNC=1;1"
    "transfer_queue;GGML_VK_ASYNC_USE_TRANSFER_QUEUE=1;1"
    "graphics_queue;GGML_VK_ALLOW_GRAPHICS_QUEUE=1;1"
    "no_int_dot;GGML_VK_DISABLE_INTEGER_DOT_PRODUCT=1;1"
    "memory_priority;GGML_VK_ENABLE_MEMORY_PRIORITY=1;1"
    "no_multi_add;GGML_VK_DISABLE_MULTI_ADD=1;1"
    "perf_logger;GGML_VK_PERF_LOGGER=1 GGML_VK_PERF_LOGGER_FREQUENCY=128;1"
)
if [ -n "${EXTRA_SETTINGS:-}" ]; then
    while IFS= read -r line; do [ -n "$line" ] && SETTINGS+=("$line"); done <<< "$EXTRA_SETTINGS"
fi
if [ -n "${KNOBS:-}" ]; then
    chosen=()
    for want in $KNOBS; do
        for s in "${SETTINGS[@]}" "${OPTIONAL[@]}"; do
            if [ "${s%%;*}" = "$want" ]; then chosen+=("$s"); fi
        done
    done
    SETTINGS=("${chosen[@]}")
fi

model_args=()
for m in "${MODELS[@]}"; do model_args+=(-m "$m"); done

echo "llama-bench: $BENCH"
echo "models: ${MODELS[*]}"
echo "reps: $REPS, budget: $BUDGET_S s, results: $RESULTS"
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.draw \
        --format=csv,noheader | tee "$RESULTS/gpu.txt" || true
fi

# run_setting NAME ENVIRONMENT FA BIN: one llama-bench run; stdout (jsonl) and stderr kept
run_setting() {
    local name=$1 vars=$2 fa=$3 bin=$4 started=$SECONDS code=0
    # shellcheck disable=SC2086  # vars: space-separated VAR=VALUE words
    timeout 300 env $vars "$bin" "${model_args[@]}" -p 512 -n 128 -r "$REPS" -ngl 99 \
        -fa "$fa" -o jsonl > "$RESULTS/$name.jsonl" 2> "$RESULTS/$name.log" || code=$?
    echo "$name;$vars;$fa;$code;$((SECONDS - started))" >> "$RESULTS/order.txt"
    echo "  $name (${vars:-defaults}, -fa $fa): $((SECONDS - started)) s, exit $code"
    if [ "$code" != 0 ]; then tail -5 "$RESULTS/$name.log" | sed 's/^/    /'; fi
}

# The estimate of a run is the previous one's length: the first run also compiles the
# pipelines (a cold driver cache), which later runs find cached.
last=0
skipped=()
for s in "${SETTINGS[@]}"; do
    IFS=';' read -r name vars fa <<< "$s"
    if [ $((SECONDS + last)) -gt "$BUDGET_S" ]; then skipped+=("$name"); continue; fi
    before=$SECONDS
    run_setting "$name" "$vars" "${fa:-1}" "$BENCH"
    last=$((SECONDS - before))
done
if [ -n "${CUDA_BENCH:-}" ]; then run_setting cuda "" 1 "$CUDA_BENCH"; fi
if [ ${#skipped[@]} -gt 0 ]; then echo "skipped (budget): ${skipped[*]}" | tee "$RESULTS/skipped.txt"; fi
echo "total: $SECONDS s"

"$PY" - "$RESULTS" <<'EOF' | tee "$RESULTS/summary.md"
import json, os, statistics, sys

results = sys.argv[1]
rows, models, engines = [], [], {}
for line in open(os.path.join(results, "order.txt")):
    name, env, fa, code, secs = line.rstrip("\n").split(";")
    tests = {}
    path = os.path.join(results, name + ".jsonl")
    for raw in open(path) if os.path.exists(path) else []:
        raw = raw.strip()
        if not raw.startswith("{"):
            continue
        t = json.loads(raw)
        model = os.path.basename(t["model_filename"]).removesuffix(".gguf")
        if model not in models:
            models.append(model)
        engines.setdefault(name, f'{t.get("backends")} on {t.get("gpu_info")}')
        kind = "pp" if t["n_gen"] == 0 else "tg"
        tests[(model, kind)] = statistics.median(t["samples_ts"])
    rows.append((name, env or "-", fa, code, secs, tests))

base = next((r[5] for r in rows if r[0] == "baseline"), {})
cuda = next((r[5] for r in rows if r[0] == "cuda"), {})
head = ["setting", "environment", "fa", "s"]
for m in models:
    head += [f"{m} pp512", f"{m} tg128"]
print("| " + " | ".join(head) + " |")
print("|" + " --- |" * len(head))
for name, env, fa, code, secs, tests in rows:
    cells = [name, env, fa, secs if code == "0" else f"{secs} (exit {code})"]
    for m in models:
        for kind in ("pp", "tg"):
            v = tests.get((m, kind))
            b = base.get((m, kind))
            if v is None:
                cells.append("")
            elif b and name != "baseline":
                cells.append(f"{v:,.1f} ({v / b:.3f})")
            else:
                cells.append(f"{v:,.1f}")
    print("| " + " | ".join(str(c) for c in cells) + " |")
print()
print("Medians of llama-bench's samples_ts (tok/s); in parentheses: / baseline.")
print("llama-bench builds: " + "; ".join(sorted({f"{v}" for v in engines.values()})))
if cuda:
    print()
    print("| setting | " + " | ".join(f"{m} pp / CUDA, tg / CUDA" for m in models) + " |")
    print("|" + " --- |" * (len(models) + 1))
    for name, env, fa, code, secs, tests in rows:
        if name == "cuda":
            continue
        cells = []
        for m in models:
            pp, tg = tests.get((m, "pp")), tests.get((m, "tg"))
            cpp, ctg = cuda.get((m, "pp")), cuda.get((m, "tg"))
            cells.append(", ".join(f"{a / c:.2f}" if a and c else "-" for a, c in ((pp, cpp), (tg, ctg))))
        print(f"| {name} | " + " | ".join(cells) + " |")
EOF
