#!/usr/bin/env bash
# GPU check for seppoc, for a machine with one NVIDIA GPU and its driver. Budget: about 5 minutes. It
#   1. reads the driver's CUDA version and the GPU's compute capability from nvidia-smi;
#   2. either uses the binaries that `scripts/gpu-build.sh` cross-built into target/gpu-bin (for a GPU machine with
#      no Rust or no internet: then python3 must already have torch + safetensors and the CUDA libraries must be
#      installed), or installs nvcc/NVRTC/cuBLAS/CCCL from PyPI pinned to that CUDA version (or uses a toolkit
#      already on PATH) and torch + safetensors into target/gpu-venv, and builds with `--features cuda`;
#   3. runs tests/gpu.rs (CPU vs CUDA per-sample errors, loss and gradients for every shipped objective; running out
#      of GPU memory is a clear error) and short
#      `seppoc run --device cuda` runs of dpo.obj and seppo.obj;
#   4. runs the DiT training-step benchmark (seppoc vs PyTorch CUDA, same weights and batch) at batch 64 and 256;
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
GPU="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n 1)"
CAP="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d ' ')"
CUDA_VER="$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\.[0-9]*\).*/\1/p' | head -n 1)"
CUDA_MAJOR="${CUDA_VER%%.*}"
stamp "GPU: $GPU; compute capability $CAP; driver supports CUDA $CUDA_VER"
export CUDA_COMPUTE_CAP="${CAP/./}"

if [ -x target/gpu-bin/seppoc ]; then
  BIN=target/gpu-bin
  PYTHON="${PYTHON:-python3}"
  stamp "using the prebuilt binaries in $BIN ($(cat $BIN/BUILT 2>/dev/null || echo 'no build record'))"
  # The CUDA headers (NVRTC compiles a few kernels at run time, with the include path baked in at build time) and
  # the libraries the binaries link: libnvrtc and libcublas of the build's major version.
  TK=""
  for d in "$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /none/bin/nvcc)")")" /usr/local/cuda /opt/cuda \
      $("$PYTHON" -c 'import nvidia, os; print(" ".join(os.path.join(p, d) for p in nvidia.__path__ for d in os.listdir(p)))' 2>/dev/null); do
    [ -f "$d/include/cuda.h" ] && { TK="$d"; break; }
  done
  [ -n "$TK" ] || { echo "no CUDA toolkit headers (include/cuda.h) found on this machine" >&2; exit 1; }
  INC="$(cat $BIN/INCLUDE_DIR 2>/dev/null || echo /tmp/seppoc-cuda-root/include)"
  [ "$(basename "$INC")" = include ] && [ ! -e "$INC" ] && mkdir -p "$(dirname "$(dirname "$INC")")" && ln -sfn "$TK" "$(dirname "$INC")"
  LIBS=""
  for so in libnvrtc.so.13 libcublas.so.13 libcublasLt.so.13; do
    f="$(find "$TK" /usr/local/cuda/ /usr/lib /opt "$("$PYTHON" -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null || echo /none)" \
      -name "$so" 2>/dev/null | head -n 1)"
    [ -n "$f" ] && LIBS="$LIBS:$(dirname "$f")"
  done
  export LD_LIBRARY_PATH="${LIBS#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  stamp "CUDA headers at $TK; libraries from $LD_LIBRARY_PATH"
  CUH="$(cat $BIN/CUH_DIR 2>/dev/null || true)"
  if [ -n "$CUH" ]; then mkdir -p "$CUH" && cp "$BIN"/cuh/*.cuh "$CUH/"; fi
  # tests/gpu.rs reads objectives/ from the source folder it was built in.
  SRC="$(cat $BIN/SOURCE_DIR 2>/dev/null || true)"
  if [ -n "$SRC" ] && [ ! -e "$SRC/objectives" ]; then mkdir -p "$(dirname "$SRC")" && ln -sfn "$(pwd)" "$SRC"; fi
  ldd "$BIN/seppoc" | grep -E "cuda|nvrtc|cublas|not found" || true
else
command -v cargo >/dev/null || { echo "cargo not found: install Rust stable, or cross-build with scripts/gpu-build.sh" >&2; exit 1; }
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
TESTS="$(cargo test --release --locked --features cuda --test gpu --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))/\1/p' | tail -n 1)"
BIN=target/gpu-local
mkdir -p "$BIN" && cp target/release/seppoc target/release/examples/bench_dit "$BIN/" && cp "$TESTS" "$BIN/gpu-tests"
fi
PYTHON="${PYTHON:-$VENV/bin/python}"

stamp "GPU tests: CPU vs CUDA for every objective"
TEST_STATUS=0
timeout 300 "$BIN/gpu-tests" --nocapture --test-threads 1 2>&1 | tee "$OUT/tests.txt" || TEST_STATUS=$?

RUN_STATUS=0
for obj in dpo seppo; do
  stamp "seppoc run --device cuda (5 steps of $obj.obj, batch 16)"
  rm -rf "$OUT/run-$obj"
  ( time timeout 300 "$BIN/seppoc" run "objectives/$obj.obj" --device cuda --steps 5 --eval-prompts 8 \
      --checkpoint-every 0 --out "$OUT/run-$obj" ) 2>&1 | tail -n 20 || RUN_STATUS=$?
done

stamp "benchmark: DiT training step, seppoc (dfdx CUDA) vs PyTorch CUDA"
: > "$OUT/bench.txt"
for model in small bench; do
  for batch in 64 256; do
    BENCH_DIT="$BIN/bench_dit" PYTHON="$PYTHON" timeout 300 bash bench/run.sh "$model" "$batch" cuda \
      2>&1 | tee -a "$OUT/bench.txt" || true
  done
done

if [ -n "${PROFILE:-}" ] && command -v ncu >/dev/null; then
  # Where a dfdx CUDA training step spends its GPU time: Nsight Compute times 600 kernels after the first 3000
  # launches (past the benchmark's warm-up and no-grad passes), summed per kernel name.
  stamp "profile (PROFILE=1): GPU time per dfdx kernel in training steps of the small DiT, batch 256"
  timeout 150 ncu --clock-control none --metrics gpu__time_duration.sum --csv --launch-skip 3000 --launch-count 600 \
    "$BIN/bench_dit" small 256 "$OUT/profile" --device cuda > "$OUT/ncu.csv" 2> "$OUT/ncu.err" || true
  "$PYTHON" - "$OUT/ncu.csv" <<'PY' || tail -n 5 "$OUT/ncu.err"
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head, rows = rows[0], rows[1:]
name, value = head.index("Kernel Name"), head.index("Metric Value")
total, count = collections.Counter(), collections.Counter()
for r in rows:
    k = r[name].split("(")[0][:60]
    total[k] += float(r[value].replace(",", ""))
    count[k] += 1
all_ns = sum(total.values())
print(f"profiled {len(rows)} kernels, {all_ns / 1e6:.2f} ms of GPU time")
for k, ns in total.most_common(15):
    print(f"  {100 * ns / all_ns:5.1f}%  {ns / 1e6:8.3f} ms  {count[k]:4d}x  {k}")
PY
fi

stamp "done; paste this into BENCHMARKS.md:"
echo
echo "### GPU run $(date -u +%Y-%m-%d) — $GPU, CUDA $CUDA_VER, compute capability $CAP"
echo
echo "Command: \`scripts/gpu-check.sh\` (commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))."
echo
echo '```'
grep -E "^(test |test result|[a-z_]+ |[a-z_]+: step loss|out of memory)" "$OUT/tests.txt" || true
grep -E "^(config|losses|RESULT|device|ratio)" "$OUT/bench.txt" || true
echo '```'
echo
echo "GPU tests exit status: $TEST_STATUS; seppoc run --device cuda exit status: $RUN_STATUS; total $(( $(date +%s) - T0 )) s"
