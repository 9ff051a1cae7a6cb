#!/usr/bin/env bash
# Reference-sampling throughput, seppoc against the same sampler in PyTorch, eager and under `torch.compile`:
# samples per second of deterministic DDIM, 10 steps, classifier-free guidance 5 (the sampler of a SePPO step's
# references), on the pretrained base model (assets/base), on CPU with 2 threads per side.
# Usage: bench/sample.sh [batch ...]   (default: 16 64; PYTHON: a python with torch and safetensors, default
# python3; ROUNDS of interleaved seppoc / eager / compiled runs, default 3; REPS timed calls per run after one
# warm-up call, default 5; COMPILE=0 leaves the compiled side out). The compiled side's warm-up call compiles one
# graph per batch size; its wall time is printed separately. It starts with the CPU model, its vector extensions,
# the GEMM kernel seppoc selected (SEPPOC_GEMM_KERNEL=avx2 forces the AVX2 one) and the load; it ends with one line
# per batch: `ratio samples/s seppoc/torch batch B: eager R.RRx, torch.compile R.RRx` (above 1: seppoc faster).
set -euo pipefail
cd "$(dirname "$0")/.."
BATCHES="${*:-16 64}"
ROUNDS="${ROUNDS:-3}"
REPS="${REPS:-5}"
COMPILE="${COMPILE:-1}"
PYTHON="${PYTHON:-python3}"
MODEL=assets/base/model.safetensors
OUT=target/bench/sample
mkdir -p "$OUT"
cargo build --release --example bench_sample --bin seppoc >/dev/null
. bench/common.sh
describe_machine ./target/release/seppoc
echo "torch: $("$PYTHON" -c 'import torch; print(torch.__version__)'), 2 threads"
wait_for_idle
: > "$OUT/rounds.txt"
for round in $(seq 1 "$ROUNDS"); do
  echo "-- round $round/$ROUNDS"
  for b in $BATCHES; do
    ./target/release/examples/bench_sample "$MODEL" "$b" "$REPS" | grep '^RESULT' | tee -a "$OUT/rounds.txt"
    "$PYTHON" bench/sample_torch.py --model "$MODEL" --batch "$b" --reps "$REPS" | grep '^RESULT' \
      | tee -a "$OUT/rounds.txt"
    if [ "$COMPILE" = 1 ]; then
      "$PYTHON" bench/sample_torch.py --model "$MODEL" --batch "$b" --reps "$REPS" --compile | grep '^RESULT' \
        | tee -a "$OUT/rounds.txt"
    fi
  done
done
echo "load average (1 min) after: $(cut -d' ' -f1 /proc/loadavg)"
rate() { awk -v who="$1" -v b="$2" '$1 == "RESULT" && $2 == who && $4 == b {print $8}' "$OUT/rounds.txt" | median; }
for b in $BATCHES; do
  s=$(rate seppoc "$b"); e=$(rate torch "$b")
  line="medians over $ROUNDS rounds, batch $b: seppoc $s samples/s, torch eager $e"
  if [ "$COMPILE" = 1 ]; then
    c=$(rate torch-compile "$b")
    w=$(awk -v b="$b" '$1 == "RESULT" && $2 == "torch-compile" && $4 == b {print $10}' "$OUT/rounds.txt" | median)
    line="$line, torch.compile $c (after a $w s warm-up call that compiles)"
  fi
  echo "$line"
done
for b in $BATCHES; do
  s=$(rate seppoc "$b"); e=$(rate torch "$b")
  ratios="eager $(awk -v a="$s" -v c="$e" 'BEGIN{printf "%.2f", a/c}')x"
  [ "$COMPILE" = 1 ] && ratios="$ratios, torch.compile $(awk -v a="$s" -v c="$(rate torch-compile "$b")" 'BEGIN{printf "%.2f", a/c}')x"
  echo "ratio samples/s seppoc/torch batch $b: $ratios"
done
