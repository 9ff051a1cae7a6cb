#!/usr/bin/env bash
# Builds seppoc's CUDA binaries on a Linux x86-64 machine that has no GPU, for a GPU machine that has no Rust
# toolchain or no internet. Needs cargo, python3, gcc and PyPI. Output: target/gpu-bin/{seppoc,bench_dit,gpu-tests}
# (stripped), which `scripts/gpu-check.sh` uses when it finds them.
#
#   - and the same for dfdx's own .cuh headers, copied beside the binaries.
# Usage: scripts/gpu-build.sh [COMPUTE_CAP] [CUDA_VERSION]     (defaults: 90 = Hopper, 13.0)
#
# How (docs/dfdx.md, section CUDA):
#   - nvcc, NVRTC, cuBLAS, cuRAND, the runtime and the CCCL headers come from PyPI's CUDA wheels pinned to
#     CUDA_VERSION (PTX from an nvcc newer than the GPU's driver is rejected, so pin the driver's CUDA version);
#   - cudarc links libcuda (the driver) at build time; the driver is not on PyPI, so the link uses a stub with the
#     same soname (libcuda.so.1) that defines every driver function cudarc declares; the real driver is loaded at
#     run time;
#   - dfdx's build script asks `nvidia-smi` for the compute capability, so a one-line stand-in answers COMPUTE_CAP;
#   - dfdx bakes the CUDA include directory into the binary (NVRTC compiles a few kernels at run time), so the build
#     uses the fixed path /tmp/seppoc-cuda-root, and gpu-check.sh points the baked path at the GPU machine's toolkit;
set -euo pipefail
cd "$(dirname "$0")/.."
CAP="${1:-90}"
VER="${2:-13.0}"
MAJOR="${VER%%.*}"
[ "$MAJOR" -ge 13 ] || { echo "gpu-build.sh: PyPI ships nvcc only for CUDA 13 and later; install a toolkit instead" >&2; exit 1; }
VENV=target/cuda-build-venv
ROOT="$(pwd)/target/cuda-root"
LINK=/tmp/seppoc-cuda-root
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "nvidia-cuda-nvcc==$VER.*" "nvidia-cuda-crt==$VER.*" "nvidia-nvvm==$VER.*" \
  "nvidia-cuda-nvrtc==$VER.*" "nvidia-cuda-runtime==$VER.*" "nvidia-cuda-cccl==$VER.*" "nvidia-cublas==$VER.*" \
  nvidia-curand
NV="$("$VENV/bin/python" -c 'import nvidia, os; print(list(nvidia.__path__)[0])')/cu$MAJOR"
[ -f "$NV/include/cuda.h" ] || { echo "gpu-build.sh: no include/cuda.h under $NV" >&2; exit 1; }

rm -rf "$ROOT" && mkdir -p "$ROOT/lib" "$ROOT/shim"
ln -s "$NV/include" "$ROOT/include"
ln -s "$NV/bin" "$ROOT/bin"
ln -s "$NV/nvvm" "$ROOT/nvvm"
for lib in nvrtc cublas cublasLt curand cudart; do
  f="$(ls "$NV"/lib/lib$lib.so.* | grep -v '\.alt\.' | head -n 1)"
  ln -sf "$f" "$ROOT/lib/lib$lib.so"
done
CUDARC="$(cargo metadata --format-version 1 --locked 2>/dev/null | "$VENV/bin/python" -c \
  'import json,sys,os; print(next(os.path.dirname(p["manifest_path"]) for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc"))')"
grep -rho "pub fn cu[A-Z][A-Za-z0-9_]*" "$CUDARC/src/driver" | sed 's/pub fn //' | sort -u \
  | awk '{print "void " $1 "(void) {}"}' > "$ROOT/libcuda-stub.c"
gcc -shared -fPIC -o "$ROOT/lib/libcuda.so" -Wl,-soname,libcuda.so.1 "$ROOT/libcuda-stub.c"
printf '#!/bin/sh\necho compute_cap\necho %s.%s\n' "${CAP%?}" "${CAP: -1}" > "$ROOT/shim/nvidia-smi"
chmod +x "$ROOT/shim/nvidia-smi"
ln -sfn "$ROOT" "$LINK"

export CUDA_ROOT="$LINK" CUDA_COMPUTE_CAP="$CAP" LIBRARY_PATH="$LINK/lib" PATH="$LINK/shim:$LINK/bin:$PATH"
cargo build --release --locked --features cuda --bin seppoc --example bench_dit
TESTS="$(cargo test --release --locked --features cuda --test gpu --no-run --message-format json 2>/dev/null \
  | "$VENV/bin/python" -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "gpu" and m.get("executable"): print(m["executable"])')"
TARGET="${CARGO_TARGET_DIR:-target}"
mkdir -p target/gpu-bin
cp "$TARGET/release/seppoc" "$TARGET/release/examples/bench_dit" target/gpu-bin/
cp "$TESTS" target/gpu-bin/gpu-tests
strip target/gpu-bin/seppoc target/gpu-bin/bench_dit target/gpu-bin/gpu-tests
# NVRTC's include path also names dfdx's build folder (its .cuh headers), baked in like the CUDA headers.
CUH="$(ls -d "$TARGET"/release/build/dfdx-*/out/cuda_utils.cuh | head -n 1)"
mkdir -p target/gpu-bin/cuh && cp "$(dirname "$CUH")"/*.cuh target/gpu-bin/cuh/
readlink -f "$(dirname "$CUH")" > target/gpu-bin/CUH_DIR
# The include directory dfdx baked in (its build script reruns only when build.rs changes, so it can be an older
# build's CUDA_ROOT): read it from that build's output.
sed -n 's/^cargo:rustc-env=CUDA_INCLUDE_DIR=//p' "$(dirname "$(dirname "$CUH")")/output" > target/gpu-bin/INCLUDE_DIR
pwd > target/gpu-bin/SOURCE_DIR
echo "sm_$CAP, CUDA $VER (PyPI wheels), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+changes')" \
  > target/gpu-bin/BUILT
echo "built for sm_$CAP with CUDA $VER:"
ls -la target/gpu-bin
