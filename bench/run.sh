#!/usr/bin/env bash
# Runs the dfdx and PyTorch DiT benchmarks back to back on the same weights and batch and prints the ratios.
# Usage: bench/run.sh [small|bench] [batch] [cpu|cuda]   (PYTHON defaults to python3; it needs torch and
# safetensors). `cuda` builds with `--features cuda` (CARGO_FEATURES overrides) and runs both sides on GPU 0.
# On CPU it also times the composite dfdx ops (`--composite`, the unfused reference path) and PyTorch under
# `torch.compile` (inductor) with the fused AdamW (COMPILE=0 leaves it out; COMPILE=1 adds it on cuda), whose
# warm-up (compilation) is reported separately. It starts with the CPU model, its vector extensions, the GEMM
# kernel seppoc selected (SEPPOC_GEMM_KERNEL=avx2 forces the AVX2 one) and the load; the last line is the ratio
# to torch.compile.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${1:-small}"
BATCH="${2:-64}"
DEVICE="${3:-cpu}"
OUT="target/bench/${CONFIG}-${BATCH}-${DEVICE}"
PYTHON="${PYTHON:-python3}"
if [ "$DEVICE" = cuda ]; then FEATURES="${CARGO_FEATURES:-cuda}"; else FEATURES="${CARGO_FEATURES:-}"; fi
# BENCH_DIT: a prebuilt bench_dit binary (scripts/gpu-build.sh makes one for GPU machines without Rust).
if [ -z "${BENCH_DIT:-}" ]; then
  cargo build --release --example bench_dit --bin seppoc ${FEATURES:+--features "$FEATURES"} >/dev/null
  BENCH_DIT=./target/release/examples/bench_dit
fi
if [ "$DEVICE" = cpu ]; then COMPILE="${COMPILE:-1}"; else COMPILE="${COMPILE:-0}"; fi
# Rounds interleave seppoc and PyTorch (ROUNDS, default 3) and the ratios use the medians, so a burst of other work
# hits both sides alike; bench/common.sh waits for an idle machine and prints its load.
ROUNDS="${ROUNDS:-3}"
. bench/common.sh
describe_machine "${SEPPOC:-./target/release/seppoc}"
echo "torch: $("$PYTHON" -c 'import torch; print(torch.__version__)'), 2 threads"
wait_for_idle
: > "$OUT.rounds" 2>/dev/null || { mkdir -p "$(dirname "$OUT")"; : > "$OUT.rounds"; }
for round in $(seq 1 "$ROUNDS"); do
  echo "-- round $round/$ROUNDS"
  "$BENCH_DIT" "$CONFIG" "$BATCH" "$OUT" --device "$DEVICE" | tee -a "$OUT.rounds"
  if [ "$DEVICE" = cpu ]; then
    "$BENCH_DIT" "$CONFIG" "$BATCH" "$OUT" --device cpu --composite | sed 's/^RESULT dfdx/RESULT dfdx-composite/' \
      | tee -a "$OUT.rounds"
  fi
  "$PYTHON" bench/dit_torch.py "$OUT" "$DEVICE" | tee -a "$OUT.rounds"
  if [ "$COMPILE" = 1 ]; then
    "$PYTHON" bench/dit_torch.py "$OUT" "$DEVICE" --compile | tee -a "$OUT.rounds"
  fi
done
col() { awk -v who="$1" -v c="$2" '$1 == "RESULT" && $2 == who {print $c}' "$OUT.rounds" | median; }
r=$(col dfdx 4); p=$(col torch 4); rf=$(col dfdx 12); pf=$(col torch 12)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
echo "medians over $ROUNDS rounds: dfdx step $r ms, no-grad $rf ms; torch step $p ms, no-grad $pf ms"
echo "ratio dfdx/torch ($DEVICE): train step $(ratio "$r" "$p")x, no-grad forward $(ratio "$rf" "$pf")x"
if [ "$DEVICE" = cpu ]; then
  c=$(col dfdx-composite 4)
  echo "ratio composite dfdx/torch (cpu): train step $(ratio "$c" "$p")x; fused/composite $(ratio "$r" "$c")x"
fi
echo "load average (1 min) after: $(cut -d' ' -f1 /proc/loadavg)"
if [ "$COMPILE" = 1 ]; then
  cr=$(col torch-compile 4); cf=$(col torch-compile 12)
  cw=$(awk '$1 == "RESULT" && $2 == "torch-compile" {print $17 + $19}' "$OUT.rounds" | median)
  echo "medians over $ROUNDS rounds: torch.compile + fused AdamW step $cr ms, no-grad $cf ms (after a warm-up of $cw s: compilation, not timed)"
  echo "ratio seppoc/torch.compile ($DEVICE): train step $(ratio "$r" "$cr")x, no-grad forward $(ratio "$rf" "$cf")x"
fi
