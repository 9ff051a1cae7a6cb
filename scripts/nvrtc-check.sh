#!/usr/bin/env bash
# Compiles seppoc's CUDA kernel sources with NVRTC on any Linux x86_64 machine (no GPU, no driver, no toolkit):
# installs NVRTC from PyPI into a venv, gives cudarc's build script the directory layout it looks for, and runs
# `examples/nvrtc_check.rs`. Usage: scripts/nvrtc-check.sh [VENV_DIR]   (NVRTC_PKG overrides the wheel)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-target/nvrtc-venv}"
PKG="${NVRTC_PKG:-nvidia-cuda-nvrtc-cu12}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet "$PKG"
LIBDIR="$(dirname "$(find "$VENV" -name 'libnvrtc.so.*' ! -name '*alt*' ! -name '*builtins*' | head -n 1)")"
[ -d "$LIBDIR" ] || { echo "libnvrtc not found in $VENV" >&2; exit 1; }
# cudarc 0.9.15's build script accepts a CUDA root that has include/cuda.h and links -lnvrtc from its lib/.
# Only NVRTC is linked for this check, so an empty cuda.h is enough to pass the root detection.
ROOT="$(pwd)/target/nvrtc-root"
mkdir -p "$ROOT/include" "$ROOT/lib"
: > "$ROOT/include/cuda.h"
ln -sf "$LIBDIR/$(basename "$(ls "$LIBDIR"/libnvrtc.so.* | grep -v -e alt -e builtins | head -n 1)")" "$ROOT/lib/libnvrtc.so"
export CUDA_ROOT="$ROOT"
export LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cargo run --release --features nvrtc-check --example nvrtc_check
