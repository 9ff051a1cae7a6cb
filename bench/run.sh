#!/usr/bin/env bash
# Runs the dfdx and PyTorch DiT benchmarks back to back on the same weights and batch and prints the ratio.
# Usage: bench/run.sh [small|bench] [batch]   (PYTHON defaults to python3; it needs torch and safetensors)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${1:-small}"
BATCH="${2:-64}"
OUT="target/bench/${CONFIG}-${BATCH}"
PYTHON="${PYTHON:-python3}"
cargo build --release --example bench_dit >/dev/null
RUST_OUT="$(./target/release/examples/bench_dit "$CONFIG" "$BATCH" "$OUT")"
echo "$RUST_OUT"
TORCH_OUT="$("$PYTHON" bench/dit_torch.py "$OUT")"
echo "$TORCH_OUT"
r=$(echo "$RUST_OUT" | awk '/^RESULT/ {print $4}')
p=$(echo "$TORCH_OUT" | awk '/^RESULT/ {print $4}')
rf=$(echo "$RUST_OUT" | awk '/^RESULT/ {print $12}')
pf=$(echo "$TORCH_OUT" | awk '/^RESULT/ {print $12}')
echo "ratio dfdx/torch: train step $(echo "scale=2; $r / $p" | bc)x, no-grad forward $(echo "scale=2; $rf / $pf" | bc)x"
