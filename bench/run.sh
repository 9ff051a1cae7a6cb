#!/usr/bin/env bash
# Runs the dfdx and PyTorch DiT benchmarks back to back on the same weights and batch and prints the ratio.
# Usage: bench/run.sh [small|bench] [batch] [cpu|cuda]   (PYTHON defaults to python3; it needs torch and
# safetensors). `cuda` builds with `--features cuda` (CARGO_FEATURES overrides) and runs both sides on GPU 0.
# On CPU it also times the composite dfdx ops (`--composite`, the unfused reference path) in the same run.
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
  cargo build --release --example bench_dit ${FEATURES:+--features "$FEATURES"} >/dev/null
  BENCH_DIT=./target/release/examples/bench_dit
fi
RUST_OUT="$("$BENCH_DIT" "$CONFIG" "$BATCH" "$OUT" --device "$DEVICE")"
echo "$RUST_OUT"
if [ "$DEVICE" = cpu ]; then
  COMPOSITE_OUT="$("$BENCH_DIT" "$CONFIG" "$BATCH" "$OUT" --device cpu --composite)"
  echo "$COMPOSITE_OUT" | sed 's/^RESULT dfdx/RESULT dfdx-composite/'
fi
TORCH_OUT="$("$PYTHON" bench/dit_torch.py "$OUT" "$DEVICE")"
echo "$TORCH_OUT"
r=$(echo "$RUST_OUT" | awk '/^RESULT/ {print $4}')
p=$(echo "$TORCH_OUT" | awk '/^RESULT/ {print $4}')
rf=$(echo "$RUST_OUT" | awk '/^RESULT/ {print $12}')
pf=$(echo "$TORCH_OUT" | awk '/^RESULT/ {print $12}')
echo "ratio dfdx/torch ($DEVICE): train step $(awk -v a="$r" -v b="$p" 'BEGIN{printf "%.2f", a/b}')x, no-grad forward $(awk -v a="$rf" -v b="$pf" 'BEGIN{printf "%.2f", a/b}')x"
if [ "$DEVICE" = cpu ]; then
  c=$(echo "$COMPOSITE_OUT" | awk '/^RESULT/ {print $4}')
  echo "ratio composite dfdx/torch (cpu): train step $(awk -v a="$c" -v b="$p" 'BEGIN{printf "%.2f", a/b}')x; fused/composite $(awk -v a="$r" -v b="$c" 'BEGIN{printf "%.2f", a/b}')x"
fi
