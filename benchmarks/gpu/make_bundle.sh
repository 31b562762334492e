#!/usr/bin/env bash
# Build the bundle that benchmarks/gpu/cuda.sh and benchmarks/gpu/vulkan.sh need on a GPU
# machine without network (the `device` tool's image: Ubuntu 24.04, python3.12 with
# PyTorch, nvcc, NVIDIA driver; no Vulkan loader, no glslc, no cffi, pydantic, gguf or
# jsonschema).
# Run here, on Debian bookworm amd64 with network, from the repository root:
#
#     benchmarks/gpu/make_bundle.sh               # writes .device/ (ignored, < 64 MiB)
#     benchmarks/gpu/make_bundle.sh DEST          # or into DEST
#
# .device/ then holds:
#   llama.cpp.tar.gz   the pinned llama.cpp tree, pruned to what CMake needs for the
#                      libraries, ggml-vulkan, ggml-cuda, tools/llama-bench,
#                      tools/batched-bench, tools/quantize and tools/server (with
#                      tools/ui, which its build needs), plus
#                      models/ggml-vocab-llama-spm.gguf (write_llama_model's tokenizer)
#   vulkan-sdk.tar.gz  a VULKAN_SDK-like folder: bin/glslc (bookworm's, with libshaderc),
#                      include/ (Vulkan 1.4.309 headers from Debian trixie, SPIR-V headers),
#                      share/cmake/SPIRV-Headers; lib/libvulkan.so is linked on the device;
#                      bin/glslc-modern when a modern glslc is cached here (llamakit
#                      vulkan-glslc build)
#   debs/              Debian's Vulkan loader and GL vendor-neutral libraries (../shared/
#                      FACTS.md: the NVIDIA ICD needs libGLX/libEGL beside libvulkan1)
#   wheels/            cp312 manylinux wheels of what the image lacks: llamakit's and its
#                      plugins' dependencies, and what the test modules import at
#                      collection (jsonschema, hypothesis), since `pytest -m gpu tests`
#                      imports every test module; the server plugin's (starlette,
#                      uvicorn, prometheus_client) for cuda.sh's serve phase, and the `openai` client the
#                      server's GPU-marked tests use
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${1:-$ROOT/.device}
PY=${PYTHON:-python3}
mkdir -p "$DEST/debs" "$DEST/wheels"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

# --- llama.cpp: the tree llamakit builds from, without data the build does not read.
TREE=$("$PY" -c "from llamakit._build.source import source_tree; print(source_tree().path)")
tar -C "$TREE" -cf "$STAGE/llama.cpp.tar" \
    --exclude=./.git --exclude=./.github --exclude=./.devops --exclude=./docs \
    --exclude=./media --exclude=./tests --exclude=./examples --exclude=./benches \
    --exclude=./gguf-py --exclude=./tools/server/public \
    --exclude='./models/*' --exclude='./ggml/src/ggml-sycl' \
    --exclude='./ggml/src/ggml-opencl' --exclude='./ggml/src/ggml-hexagon' \
    --exclude='./ggml/src/ggml-metal' --exclude='./ggml/src/ggml-cann' \
    --exclude='./ggml/src/ggml-webgpu' --exclude='./ggml/src/ggml-openvino' \
    --exclude='./ggml/src/ggml-et' --exclude='./ggml/src/ggml-virtgpu' \
    .
tar -C "$TREE" -rf "$STAGE/llama.cpp.tar" ./models/ggml-vocab-llama-spm.gguf
gzip -c "$STAGE/llama.cpp.tar" > "$DEST/llama.cpp.tar.gz"

# --- VULKAN_SDK-like folder: what plugins/vulkan's prerequisite checks and ggml-vulkan's
# CMake (FindVulkan with COMPONENTS glslc, find_package(SPIRV-Headers CONFIG)) look for.
SDK=$STAGE/vulkan-sdk
mkdir -p "$SDK/bin" "$SDK/lib" "$SDK/include" "$SDK/share/cmake"
cp /usr/bin/glslc "$SDK/bin/glslc.bin"
for lib in $(ldd /usr/bin/glslc | awk '/libshaderc/ {print $3}'); do cp -L "$lib" "$SDK/lib/"; done
cat > "$SDK/bin/glslc" <<'EOF'
#!/bin/sh
# bookworm's glslc with its own libshaderc, wherever this folder is unpacked
here=$(dirname "$(readlink -f "$0")")
LD_LIBRARY_PATH="$here/../lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/glslc.bin" "$@"
EOF
chmod +x "$SDK/bin/glslc"
HEADERS=$("$PY" -c "
from llamakit_vulkan._headers import fetched_include_dir, headers_include_dir, prepare_headers
prepare_headers()
print(headers_include_dir() or '/usr/include')")
cp -r "$HEADERS/vulkan" "$SDK/include/"
if [ -d "$HEADERS/vk_video" ]; then cp -r "$HEADERS/vk_video" "$SDK/include/"; fi
cp -r /usr/include/spirv "$SDK/include/"
cp -r /usr/share/cmake/SPIRV-Headers "$SDK/share/cmake/"
# The modern glslc (shaderc 2025.2; matrix-core shaders), when `llamakit vulkan-glslc build`
# has made one here: vulkan.sh builds the variant with it (GLSLC=system does not).
if MODERN=$("$PY" -m llamakit vulkan-glslc path 2>/dev/null); then
    strip -o "$SDK/bin/glslc-modern" "$MODERN"
fi
tar -C "$STAGE" -czf "$DEST/vulkan-sdk.tar.gz" vulkan-sdk

# --- Vulkan loader and libglvnd (bookworm's run on Ubuntu 24.04), with a private apt state
# so the system's package lists stay untouched.
APT=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$STAGE/lists")
mkdir -p "$STAGE/lists/partial"
apt-get "${APT[@]}" update >/dev/null
(cd "$DEST/debs" && rm -f ./*.deb && apt-get "${APT[@]}" download \
    libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 2>/dev/null)

# --- wheels: the versions this checkout is tested with, for CPython 3.12 on manylinux.
rm -f "$DEST/wheels/"*.whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$DEST/wheels" \
    cffi==2.0.0 pycparser==3.0 pydantic==2.13.4 pydantic_core==2.46.4 annotated-types \
    "typing-extensions>=4.14.1" typing-inspection pluggy==1.6.0 gguf==0.19.0 \
    hatchling==1.33.0 pathspec==1.1.1 "packaging>=24.2" trove-classifiers tomlkit \
    "jinja2>=3.1.6" markupsafe editables \
    jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 \
    rpds-py==2026.9.1 attrs==26.1.0 hypothesis==6.170.17 sortedcontainers==2.4.0 \
    starlette==1.10.0 uvicorn==0.55.0 prometheus_client==0.26.0 anyio==4.16.0 \
    h11==0.16.0 click==8.5.1 idna==3.20 sniffio==1.3.1 \
    openai==3.57.0 httpx2==2.16.2 httpcore2==2.16.2 truststore==0.10.5 jiter==0.19.0

du -sh "$DEST"/* | sed "s|$ROOT/||"
du -sh "$DEST" | sed "s|$ROOT/||"
