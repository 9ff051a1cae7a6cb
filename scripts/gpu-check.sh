#!/usr/bin/env bash
# GPU check for seppoc, for a machine with one NVIDIA GPU, its driver, Rust, python3 and access to
# PyPI and crates.io only. Budget: about 8 minutes. It
#   1. reads the driver's CUDA version and the GPU's compute capability from nvidia-smi;
#   2. installs nvcc/NVRTC/cuBLAS/CCCL from PyPI pinned to that CUDA version (or uses a toolkit already on PATH)
#      and torch + safetensors for the PyTorch side, into target/gpu-venv;
#   3. builds with `--features cuda`, runs tests/gpu.rs (CPU vs CUDA loss and gradients for every shipped
#      objective) and a 5-step `seppoc run --device cuda`;
#   4. runs the DiT training-step benchmark (seppoc vs PyTorch CUDA, same weights and batch) and prints the ratio,
#   5. prints a block to paste into BENCHMARKS.md. The full log is in target/gpu-check/log.txt.
# Usage: scripts/gpu-check.sh          (SKIP_INSTALL=1 reuses target/gpu-venv and target/cuda-root)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/gpu-check
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
T0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }

command -v nvidia-smi >/dev/null || { echo "nvidia-smi not found: this script needs an NVIDIA GPU and driver" >&2; exit 1; }
command -v cargo >/dev/null || { echo "cargo not found: install Rust stable first" >&2; exit 1; }
GPU="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n 1)"
CAP="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d ' ')"
CUDA_VER="$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\.[0-9]*\).*/\1/p' | head -n 1)"
CUDA_MAJOR="${CUDA_VER%%.*}"
stamp "GPU: $GPU; compute capability $CAP; driver supports CUDA $CUDA_VER"
export CUDA_COMPUTE_CAP="${CAP/./}"

VENV=target/gpu-venv
ROOT="$(pwd)/target/cuda-root"
if [ -z "${SKIP_INSTALL:-}" ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  stamp "installing torch + safetensors (PyPI)"
  "$VENV/bin/pip" install --quiet torch safetensors numpy
  rm -rf "$ROOT" && mkdir -p "$ROOT/include" "$ROOT/lib" "$ROOT/bin"
  if command -v nvcc >/dev/null; then
    # A toolkit on PATH: use it as the CUDA root (its nvcc must not be newer than the driver).
    TK="$(dirname "$(dirname "$(command -v nvcc)")")"
    stamp "using the CUDA toolkit at $TK ($(nvcc --version | tail -n 1))"
    rm -rf "$ROOT" && ln -s "$TK" "$ROOT"
  elif [ "$CUDA_MAJOR" -ge 13 ]; then
    # PyPI's CUDA 13 wheels ship nvcc; pin the compilers to the driver's CUDA minor so the PTX loads.
    stamp "installing nvcc/NVRTC $CUDA_VER.* + cuBLAS 13 + CCCL from PyPI"
    "$VENV/bin/pip" install --quiet "nvidia-cuda-nvcc==$CUDA_VER.*" "nvidia-cuda-nvrtc==$CUDA_VER.*" \
      "nvidia-cuda-runtime==$CUDA_VER.*" "nvidia-cuda-cccl" "nvidia-cublas>=13,<14"
    NV="$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.dirname(nvidia.__file__))' 2>/dev/null \
      || "$VENV/bin/python" -c 'import nvidia; print(list(nvidia.__path__)[0])')"
    for d in "$NV"/*/ "$NV"/cu13/; do
      [ -d "$d/include" ] && cp -rn "$d/include/." "$ROOT/include/" 2>/dev/null || true
      [ -d "$d/lib" ] && for f in "$d"/lib/*.so*; do ln -sf "$f" "$ROOT/lib/"; done 2>/dev/null || true
      [ -d "$d/bin" ] && cp -rn "$d/bin/." "$ROOT/bin/" 2>/dev/null || true
      [ -d "$d/nvvm" ] && cp -rn "$d/nvvm" "$ROOT/" 2>/dev/null || true
    done
    for lib in nvrtc cublas cublasLt; do
      f="$(ls "$ROOT"/lib/lib$lib.so.* 2>/dev/null | head -n 1)"
      [ -n "$f" ] && ln -sf "$f" "$ROOT/lib/lib$lib.so"
    done
  else
    echo "The driver supports CUDA $CUDA_VER, and PyPI's CUDA 12 nvcc wheel ships no nvcc binary (docs/dfdx.md, section CUDA)." >&2
    echo "Install the CUDA $CUDA_VER toolkit (nvcc on PATH) and rerun." >&2
    exit 1
  fi
  # The linker needs libcuda.so; the driver provides libcuda.so.1.
  if [ ! -e "$ROOT/lib/libcuda.so" ]; then
    DRV="$(ldconfig -p | awk '/libcuda\.so\.1 /{print $NF; exit}')"
    [ -n "$DRV" ] && ln -sf "$DRV" "$ROOT/lib/libcuda.so" || true
  fi
fi
export CUDA_ROOT="$ROOT" CUDA_PATH="$ROOT" PATH="$ROOT/bin:$PATH"
export LD_LIBRARY_PATH="$ROOT/lib:$ROOT/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LIBRARY_PATH="$ROOT/lib:$ROOT/lib64${LIBRARY_PATH:+:$LIBRARY_PATH}"
stamp "nvcc: $(nvcc --version | tail -n 1)"

stamp "building (release, --features cuda)"
cargo build --release --locked --features cuda --bin seppoc --example bench_dit
cargo test --release --locked --features cuda --test gpu --no-run

stamp "GPU tests: CPU vs CUDA for every objective"
TEST_STATUS=0
cargo test --release --locked --features cuda --test gpu -- --nocapture --test-threads 1 | tee "$OUT/tests.txt" \
  || TEST_STATUS=$?

stamp "seppoc run --device cuda (5 steps of dpo.obj, batch 16)"
RUN_STATUS=0
( time ./target/release/seppoc run objectives/dpo.obj --device cuda --steps 5 --eval-prompts 8 --checkpoint-every 0 \
    --out "$OUT/run-dpo" ) 2>&1 | tail -n 20 || RUN_STATUS=$?

stamp "benchmark: DiT training step, seppoc (dfdx CUDA) vs PyTorch CUDA"
: > "$OUT/bench.txt"
for model in small bench; do
  PYTHON="$VENV/bin/python" bash bench/run.sh "$model" 64 cuda | tee -a "$OUT/bench.txt" || true
done

stamp "done; paste this into BENCHMARKS.md:"
echo
echo "### GPU run $(date -u +%Y-%m-%d) — $GPU, CUDA $CUDA_VER, compute capability $CAP"
echo
echo "Command: \`scripts/gpu-check.sh\` (commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))."
echo
echo '```'
grep -E "^(test |test result|[a-z_]+: loss cpu|[a-z_ ]+: max relative)" "$OUT/tests.txt" || true
grep -E "^(config|losses|RESULT|device|ratio)" "$OUT/bench.txt" || true
echo '```'
echo
echo "GPU tests exit status: $TEST_STATUS; seppoc run --device cuda exit status: $RUN_STATUS; total $(( $(date +%s) - T0 )) s"
