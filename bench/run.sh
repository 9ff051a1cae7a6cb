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
cargo build --release --example bench_dit ${FEATURES:+--features "$FEATURES"} >/dev/null
RUST_OUT="$(./target/release/examples/bench_dit "$CONFIG" "$BATCH" "$OUT" --device "$DEVICE")"
echo "$RUST_OUT"
if [ "$DEVICE" = cpu ]; then
  COMPOSITE_OUT="$(./target/release/examples/bench_dit "$CONFIG" "$BATCH" "$OUT" --device cpu --composite)"
  echo "$COMPOSITE_OUT" | sed 's/^RESULT dfdx/RESULT dfdx-composite/'
fi
TORCH_OUT="$("$PYTHON" bench/dit_torch.py "$OUT" "$DEVICE")"
echo "$TORCH_OUT"
r=$(echo "$RUST_OUT" | awk '/^RESULT/ {print $4}')
p=$(echo "$TORCH_OUT" | awk '/^RESULT/ {print $4}')
rf=$(echo "$RUST_OUT" | awk '/^RESULT/ {print $12}')
pf=$(echo "$TORCH_OUT" | awk '/^RESULT/ {print $12}')
echo "ratio dfdx/torch ($DEVICE): train step $(echo "scale=2; $r / $p" | bc)x, no-grad forward $(echo "scale=2; $rf / $pf" | bc)x"
if [ "$DEVICE" = cpu ]; then
  c=$(echo "$COMPOSITE_OUT" | awk '/^RESULT/ {print $4}')
  echo "ratio composite dfdx/torch (cpu): train step $(echo "scale=2; $c / $p" | bc)x; fused/composite $(echo "scale=2; $r / $c" | bc)x"
fi
